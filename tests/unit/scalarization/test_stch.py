import math

import torch
from pytest import mark, raises

from torchjd.scalarization import STCH


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stch_value_and_gradient_match_the_hand_formula(dtype: torch.dtype):
    preference = torch.tensor([0.2, 0.5, 0.3])
    ideal_point = torch.tensor([0.1, -1.0, 0.0])
    mu = 0.7
    losses = torch.tensor([2.0, 1.0, 3.0], dtype=dtype, requires_grad=True)
    value = STCH(mu=mu, weights=preference, reference=ideal_point)(losses)
    scaled = preference.to(dtype) * (losses.detach() - ideal_point.to(dtype)) / mu
    expected = mu * math.log(sum(math.exp(s) for s in scaled.tolist()))
    assert value.dtype == dtype
    torch.testing.assert_close(value, torch.tensor(expected, dtype=dtype))
    (gradient,) = torch.autograd.grad(value, losses)
    # d/dL_i = λ_i softmax(λ (L - z*) / μ)_i
    torch.testing.assert_close(gradient, preference.to(dtype) * torch.softmax(scaled, dim=0))


def test_stch_default_preference_is_uniform_and_ideal_point_is_zero():
    losses = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    explicit = STCH(mu=0.5, weights=torch.full((3,), 1 / 3), reference=torch.zeros(3))
    torch.testing.assert_close(STCH(mu=0.5)(losses), explicit.double()(losses))


def test_stch_tends_to_the_weighted_max_as_mu_goes_to_zero():
    losses = torch.tensor([1.0, 3.0, 2.5], dtype=torch.float64)
    preference = torch.tensor([1.0, 0.5, 1.0], dtype=torch.float64)
    tchebycheff = torch.max(preference * losses)  # 2.5
    gaps = []
    for mu in [10.0, 1.0, 0.1, 0.01, 0.001]:
        value = STCH(mu=mu, weights=preference)(losses)
        # The paper's bounds: max <= g_mu <= max + mu log m.
        assert tchebycheff <= value <= tchebycheff + mu * math.log(3) + 1e-12
        gaps.append(float(value - tchebycheff))
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[-1] < 1e-6


def test_stch_gradient_concentrates_on_the_worst_objective_as_mu_goes_to_zero():
    losses = torch.tensor([1.0, 3.0, 2.0], requires_grad=True)
    (gradient,) = torch.autograd.grad(STCH(mu=0.01, weights=torch.ones(3))(losses), losses)
    torch.testing.assert_close(gradient, torch.tensor([0.0, 1.0, 0.0]))


def test_stch_is_stable_for_large_values():
    value = STCH(mu=0.001, weights=torch.ones(2))(torch.tensor([1e4, 2e4]))
    torch.testing.assert_close(value, torch.tensor(2e4))


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stch_with_a_tiny_mu_on_huge_values_is_the_weighted_max(dtype: torch.dtype):
    # Dividing by mu before the shift overflowed to inf: 1e30 / 1e-10 = 1e40 > float32's max.
    values = torch.tensor([1e30, 3e30], dtype=dtype, requires_grad=True)
    value = STCH(mu=1e-10, weights=torch.ones(2))(values)
    torch.testing.assert_close(value, torch.tensor(3e30, dtype=dtype))
    (gradient,) = torch.autograd.grad(value, values)
    torch.testing.assert_close(gradient, torch.tensor([0.0, 1.0], dtype=dtype))

def test_stch_rejects_losses_of_another_length():
    with raises(ValueError, match="`weights`"):
        STCH(weights=torch.ones(2))(torch.ones(3))
    with raises(ValueError, match="`reference`"):
        STCH(reference=torch.ones(2))(torch.ones(3))


@mark.parametrize(
    ["kwargs", "error", "name"],
    [
        ({"mu": 0.0}, ValueError, "mu"),
        ({"mu": -1.0}, ValueError, "mu"),
        ({"mu": float("nan")}, ValueError, "mu"),
        ({"mu": float("inf")}, ValueError, "mu"),
        ({"mu": "1"}, TypeError, "mu"),
        ({"mu": True}, TypeError, "mu"),
        ({"weights": torch.tensor([1.0, -0.5])}, ValueError, "weights"),
        ({"weights": torch.zeros(2)}, ValueError, "weights"),
        ({"weights": [0.5, 0.5]}, TypeError, "weights"),
        ({"reference": torch.tensor([0.0, float("nan")])}, ValueError, "reference"),
    ],
)
def test_stch_rejects_invalid_parameters(kwargs: dict, error: type[Exception], name: str):
    with raises(error, match=f"`{name}`"):
        STCH(**kwargs)
