import math

import torch
from pytest import mark, raises

from torchjd.scalarization import PBI


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pbi_value_and_gradient_match_the_hand_formula(dtype: torch.dtype):
    preference = torch.tensor([3.0, 4.0])  # unit direction (0.6, 0.8)
    ideal_point = torch.tensor([1.0, -1.0])
    losses = torch.tensor([3.0, 1.0], dtype=dtype, requires_grad=True)  # d = (2, 2)
    value = PBI(theta=2.0, weights=preference, reference=ideal_point)(losses)
    # d1 = 0.6 * 2 + 0.8 * 2 = 2.8, d - d1 u = (2 - 1.68, 2 - 2.24) = (0.32, -0.24), d2 = 0.4
    assert value.dtype == dtype
    torch.testing.assert_close(value, torch.tensor(2.8 + 2.0 * 0.4, dtype=dtype))
    (gradient,) = torch.autograd.grad(value, losses)
    # grad d1 = u; grad d2 = (I - u u^T) e / ||e|| with e = d - d1 u (the projection kills u).
    u = torch.tensor([0.6, 0.8], dtype=dtype)
    e = torch.tensor([0.32, -0.24], dtype=dtype)
    torch.testing.assert_close(gradient, u + 2.0 * e / e.norm())


def test_pbi_on_the_preference_ray_is_the_distance_to_the_ideal_point():
    value = PBI(theta=100.0)(torch.tensor([2.0, 2.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(value, torch.tensor(2.0 * math.sqrt(3), dtype=torch.float64))


def test_pbi_with_zero_theta_is_the_projection_on_the_preference():
    losses = torch.tensor([1.0, 5.0])
    torch.testing.assert_close(PBI(theta=0.0)(losses), torch.tensor(6.0 / math.sqrt(2)))


def test_pbi_only_uses_the_direction_of_the_preference():
    losses = torch.tensor([1.0, 2.0, 0.5])
    torch.testing.assert_close(
        PBI(weights=torch.tensor([1.0, 2.0, 3.0]))(losses),
        PBI(weights=torch.tensor([10.0, 20.0, 30.0]))(losses),
    )


def test_pbi_prefers_the_point_closest_to_the_ray():
    # Two points with the same sum; the one on the ray (1, 1) direction wins for uniform preference.
    scalarizer = PBI()
    assert scalarizer(torch.tensor([1.0, 1.0])) < scalarizer(torch.tensor([0.5, 1.5]))


def test_pbi_gradient_is_finite_at_the_ideal_point():
    losses = torch.zeros(2, requires_grad=True)
    (gradient,) = torch.autograd.grad(PBI()(losses), losses)
    assert torch.all(torch.isfinite(gradient))


def test_pbi_rejects_losses_of_another_length():
    with raises(ValueError, match="`weights`"):
        PBI(weights=torch.ones(2))(torch.ones(3))


@mark.parametrize(
    ["kwargs", "error", "name"],
    [
        ({"theta": -1.0}, ValueError, "theta"),
        ({"theta": float("nan")}, ValueError, "theta"),
        ({"theta": None}, TypeError, "theta"),
        ({"weights": torch.tensor([1.0, -1.0])}, ValueError, "weights"),
        ({"weights": torch.zeros(3)}, ValueError, "weights"),
        ({"reference": torch.zeros(0)}, ValueError, "reference"),
    ],
)
def test_pbi_rejects_invalid_parameters(kwargs: dict, error: type[Exception], name: str):
    with raises(error, match=f"`{name}`"):
        PBI(**kwargs)
