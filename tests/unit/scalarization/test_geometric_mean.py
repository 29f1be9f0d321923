import torch
from pytest import mark, raises

from torchjd.scalarization import GeometricMean


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_geometric_mean_value_and_gradient_match_the_hand_formula(dtype: torch.dtype):
    losses = torch.tensor([1.0, 4.0, 16.0, 0.25], dtype=dtype, requires_grad=True)
    value = GeometricMean()(losses)
    expected = torch.prod(losses.detach()) ** 0.25
    assert value.dtype == dtype
    torch.testing.assert_close(value, expected)
    (gradient,) = torch.autograd.grad(value, losses)
    # d/dL_i (prod L)^(1/m) = G / (m L_i)
    torch.testing.assert_close(gradient, expected / (4 * losses.detach()))


def test_geometric_mean_is_invariant_in_direction_to_rescaling_one_loss():
    losses = torch.tensor([0.5, 3.0], dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([1000.0, 1.0], dtype=torch.float64)
    (gradient,) = torch.autograd.grad(GeometricMean()(losses), losses)
    (scaled_gradient,) = torch.autograd.grad(GeometricMean()(losses * scale), losses)
    # Scaling the first loss by 1000 scales the whole objective, not the balance between tasks.
    torch.testing.assert_close(scaled_gradient, gradient * 1000.0**0.5)


def test_geometric_mean_does_not_overflow_on_many_large_losses():
    losses = torch.full((100,), 1e10)
    torch.testing.assert_close(GeometricMean()(losses), torch.tensor(1e10))


def test_geometric_mean_rejects_negative_values():
    with raises(ValueError, match="`values`"):
        GeometricMean()(torch.tensor([1.0, -1.0]))


def test_geometric_mean_with_a_zero_value_is_zero():
    # (1 * 0 * 4)^(1/3) = 0, as in torchjd 0.18.
    assert GeometricMean()(torch.tensor([1.0, 0.0, 4.0])) == 0.0
