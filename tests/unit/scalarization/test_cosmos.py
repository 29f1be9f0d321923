import torch
from pytest import mark, raises

from torchjd.scalarization import COSMOS


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cosmos_value_and_gradient_match_the_hand_formula(dtype: torch.dtype):
    preference = torch.tensor([0.2, 0.3, 0.5])
    lambda_ = 1.5
    losses = torch.tensor([1.0, 2.0, 0.5], dtype=dtype, requires_grad=True)
    value = COSMOS(lambda_=lambda_, weights=preference)(losses)
    r, L = preference.to(dtype), losses.detach()
    linear = r @ L
    cosine = linear / (r.norm() * L.norm())
    assert value.dtype == dtype
    torch.testing.assert_close(value, linear - lambda_ * cosine)
    (gradient,) = torch.autograd.grad(value, losses)
    # grad cos(r, L) = r / (||r|| ||L||) - cos(r, L) L / ||L||^2
    gradient_cosine = r / (r.norm() * L.norm()) - cosine * L / L.norm() ** 2
    torch.testing.assert_close(gradient, r - lambda_ * gradient_cosine)


def test_cosmos_without_penalty_is_the_linear_scalarization():
    losses = torch.tensor([1.0, 2.0, 4.0])
    preference = torch.tensor([0.5, 0.25, 0.25])
    torch.testing.assert_close(COSMOS(0.0, preference)(losses), torch.tensor(2.0))
    torch.testing.assert_close(COSMOS(0.0)(losses), torch.tensor(7.0 / 3))


def test_cosmos_penalty_favours_losses_aligned_with_the_preference():
    scalarizer = COSMOS(lambda_=10.0, weights=torch.tensor([0.8, 0.2]))
    # Same linear term r^T L = 1.0; the first is aligned with r, the second is not.
    aligned = torch.tensor([0.8, 0.2]) / (0.8 * 0.8 + 0.2 * 0.2)
    misaligned = torch.tensor([0.25, 4.0])
    assert scalarizer(aligned) < scalarizer(misaligned)


def test_cosmos_preference_can_be_reassigned_between_calls():
    scalarizer = COSMOS(lambda_=1.0)
    losses = torch.tensor([3.0, 4.0])
    scalarizer.weights = torch.tensor([1.0, 0.0])
    torch.testing.assert_close(scalarizer(losses), torch.tensor(3.0 - 0.6))


def test_cosmos_of_all_zero_values_is_zero_with_the_gradient_of_the_linear_term():
    # The cosine is undefined at 0 (it was 0 / 0 = nan): taken as 0 there.
    weights = torch.tensor([0.25, 0.75])
    values = torch.zeros(2, requires_grad=True)
    value = COSMOS(lambda_=1.0, weights=weights)(values)
    assert value == 0.0
    (gradient,) = torch.autograd.grad(value, values)
    torch.testing.assert_close(gradient, weights)


@mark.parametrize("scale", [1e-30, 1e30])
def test_cosmos_cosine_is_exact_at_extreme_float32_scales(scale: float):
    # ||L|| over- or underflows in float32 at these scales if computed directly.
    values = torch.tensor([3.0, 4.0]) * scale
    value = COSMOS(lambda_=1.0, weights=torch.tensor([1.0, 0.0]))(values)
    torch.testing.assert_close(value, torch.tensor(3.0 * scale - 0.6))


def test_cosmos_rejects_losses_of_another_length():
    with raises(ValueError, match="`weights`"):
        COSMOS(1.0, torch.ones(2))(torch.ones(3))


@mark.parametrize(
    ["kwargs", "error", "name"],
    [
        ({"lambda_": -0.1}, ValueError, "lambda_"),
        ({"lambda_": float("inf")}, ValueError, "lambda_"),
        ({"lambda_": "1"}, TypeError, "lambda_"),
        ({"lambda_": 1.0, "weights": torch.tensor([0.5, -0.5])}, ValueError, "weights"),
        ({"lambda_": 1.0, "weights": torch.tensor([1, 1])}, TypeError, "weights"),
    ],
)
def test_cosmos_rejects_invalid_parameters(kwargs: dict, error: type[Exception], name: str):
    with raises(error, match=f"`{name}`"):
        COSMOS(**kwargs)
