import math

import torch
from pytest import mark, raises

from torchjd.aggregation import CAGrad, CAGradWeighting
from torchjd.aggregation._cagrad import _project_onto_simplex


def _dual_objective(weights: torch.Tensor, matrix: torch.Tensor, c: float) -> torch.Tensor:
    """F(w) = g_w · g_0 + c ||g_0|| ||g_w||, for weights [..., m]."""
    mean = matrix.mean(dim=0)
    combined = weights @ matrix
    return combined @ mean + c * mean.norm() * combined.norm(dim=-1)


def _dual_weights(result: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Recovers w* from the aggregation d* = g_0 + λ g_w* (w* sums to one)."""
    m = matrix.shape[0]
    weights = torch.linalg.lstsq(matrix.T, (result - matrix.mean(dim=0)).unsqueeze(1)).solution[
        :, 0
    ]
    return weights / weights.sum() if m > 1 else torch.ones(1, dtype=matrix.dtype)


@mark.parametrize("seed", range(6))
@mark.parametrize("c", [0.2, 0.5, 0.9])
def test_cagrad_solves_the_dual_for_two_rows(seed: int, c: float):
    torch.manual_seed(seed)
    matrix = torch.randn(2, 4, dtype=torch.float64)
    result = CAGrad(c=c, norm_eps=0.0)(matrix)
    t = torch.linspace(0, 1, 100_001, dtype=torch.float64).unsqueeze(1)
    grid_values = _dual_objective(torch.cat([t, 1 - t], dim=1), matrix, c)
    found = _dual_objective(_dual_weights(result, matrix), matrix, c)
    assert found <= grid_values.min() + 1e-9


@mark.parametrize("seed", range(6))
def test_cagrad_maximizes_the_worst_improvement_in_the_ball(seed: int):
    # Primal check in the plane: the worst improvement is concave, so its max is on the circle.
    torch.manual_seed(seed)
    matrix = torch.randn(3, 2, dtype=torch.float64)
    c = 0.5
    result = CAGrad(c=c, norm_eps=0.0)(matrix)
    mean = matrix.mean(dim=0)
    radius = c * mean.norm()
    angles = torch.linspace(0, 2 * math.pi, 200_001, dtype=torch.float64)
    circle = mean + radius * torch.stack([angles.cos(), angles.sin()], dim=1)
    best_on_circle = (circle @ matrix.T).min(dim=1).values.max()
    assert (result - mean).norm() <= radius * (1 + 1e-9)
    assert (matrix @ result).min() >= best_on_circle - 1e-8


@mark.parametrize("seed", range(4))
def test_cagrad_dual_beats_random_simplex_points_for_four_rows(seed: int):
    torch.manual_seed(seed)
    matrix = torch.randn(4, 6, dtype=torch.float64)
    result = CAGrad(c=0.5, norm_eps=0.0)(matrix)
    samples = torch.distributions.Dirichlet(torch.full((4,), 0.5, dtype=torch.float64)).sample(
        (20_000,)
    )
    corners = torch.eye(4, dtype=torch.float64)
    values = _dual_objective(torch.cat([samples, corners]), matrix, 0.5)
    assert _dual_objective(_dual_weights(result, matrix), matrix, 0.5) <= values.min() + 1e-9


def test_cagrad_with_zero_radius_is_the_mean():
    torch.manual_seed(0)
    matrix = torch.randn(5, 3)
    assert torch.allclose(CAGrad(c=0.0)(matrix), matrix.mean(dim=0))


def test_cagrad_hand_computed_values():
    # Symmetric orthonormal rows: w* = (1/2, 1/2), g_w* = g_0, so d* = (1 + c) g_0.
    matrix = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(
        CAGrad(c=0.5, norm_eps=0.0)(matrix), torch.tensor([0.75, 0.75], dtype=torch.float64)
    )


def test_cagrad_is_scale_and_permutation_equivariant():
    torch.manual_seed(1)
    matrix = torch.randn(3, 5, dtype=torch.float64)
    aggregator = CAGrad(c=0.5, norm_eps=0.0)
    result = aggregator(matrix)
    assert torch.allclose(aggregator(1e3 * matrix), 1e3 * result, atol=1e-7 * 1e3)
    assert torch.allclose(aggregator(matrix[[2, 0, 1]]), result, atol=1e-7)


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cagrad_single_row_zero_matrix_and_dtype(dtype: torch.dtype):
    row = torch.tensor([[3.0, -4.0]], dtype=dtype)
    result = CAGrad(c=0.5, norm_eps=0.0)(row)
    assert result.dtype == dtype
    assert torch.allclose(result, 1.5 * row[0])
    assert torch.equal(CAGrad(c=0.5)(torch.zeros(3, 2, dtype=dtype)), torch.zeros(2, dtype=dtype))


def test_cagrad_float32_is_close_to_float64():
    torch.manual_seed(2)
    matrix = torch.randn(4, 10, dtype=torch.float64)
    assert torch.allclose(CAGrad(c=0.5)(matrix.float()).double(), CAGrad(c=0.5)(matrix), atol=1e-3)


def test_project_onto_simplex_matches_brute_force():
    torch.manual_seed(3)
    vector = torch.randn(3, dtype=torch.float64) * 2
    projection = _project_onto_simplex(vector)
    samples = torch.distributions.Dirichlet(torch.ones(3, dtype=torch.float64)).sample((50_000,))
    assert torch.isclose(projection.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.all(projection >= 0)
    assert (projection - vector).norm() <= (samples - vector).norm(dim=1).min() + 1e-12


def test_cagrad_repr_and_str():
    assert repr(CAGrad(c=0.5)) == "CAGrad(c=0.5, norm_eps=0.0001)"
    assert str(CAGrad(c=0.5)) == "CAGrad"
    assert repr(CAGradWeighting(c=0.1, norm_eps=0.0)) == "CAGradWeighting(c=0.1, norm_eps=0.0)"
    assert str(CAGradWeighting(c=0.5)) == "CAGradWeighting"


def test_cagrad_rejects_invalid_parameters():
    with raises(ValueError, match="`c`"):
        CAGrad(c=-0.1)
    with raises(TypeError, match="`c`"):
        CAGrad(c="0.5")
    with raises(ValueError, match="norm_eps"):
        CAGrad(c=0.5, norm_eps=-1.0)
    with raises(ValueError, match="`c`"):
        CAGradWeighting(c=float("nan"))


@mark.parametrize("dtype", [torch.float32, torch.float64])
@mark.parametrize("c", [1.0, 1.5, 3.0])
@mark.parametrize("seed", range(8))
def test_cagrad_with_c_at_least_one_never_conflicts(seed: int, c: float, dtype: torch.dtype):
    # With c >= 1 the ball around g_0 contains the origin, so the worst improvement is >= 0. A
    # strongly conflicting fourth row puts the origin close to the convex hull of the rows.
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.randn(4, 7, generator=generator, dtype=dtype)
    matrix[3] = -3 * matrix[:3].sum(dim=0) + 0.3 * torch.randn(7, generator=generator, dtype=dtype)
    result = CAGrad(c=c)(matrix)
    cosines = matrix @ result / (matrix.norm(dim=1) * result.norm().clamp(min=1e-30))
    assert cosines.min() >= -1e-6


@mark.parametrize("seed", range(4))
def test_cagrad_solution_satisfies_the_optimality_conditions(seed: int):
    # Primal-dual: d* = g_0 + r g_w / ||g_w|| has worst improvement equal to the dual value F(w*),
    # and w* beats every simplex corner and random point.
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.randn(5, 8, generator=generator, dtype=torch.float64)
    matrix[4] = -2 * matrix[:4].mean(dim=0) + 0.1 * matrix[4]  # rows stay independent
    c = 0.7
    result = CAGrad(c=c)(matrix)
    weights = _dual_weights(result, matrix)
    dual_value = _dual_objective(weights, matrix, c)
    assert torch.isclose((matrix @ result).min(), dual_value, atol=1e-10)
    assert (result - matrix.mean(dim=0)).norm() <= c * matrix.mean(dim=0).norm() * (1 + 1e-9)


@mark.parametrize("scale", [1e-30, 1e-3, 1e3, 1e30])
def test_cagrad_is_exactly_scale_covariant_with_the_default_norm_eps(scale: float):
    generator = torch.Generator().manual_seed(5)
    matrix = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    result = CAGrad(c=0.5)(matrix)
    assert (CAGrad(c=0.5)(scale * matrix) / scale - result).norm() <= 1e-6 * result.norm()


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cagrad_with_the_origin_in_the_hull_gives_zero_for_c_at_least_one(dtype: torch.dtype):
    # Rows g and -3 g: the mean is -g, the ball of radius c ||g|| >= ||g|| contains 0, and every
    # direction of the row space but 0 conflicts with one of the rows.
    g = torch.tensor([1.0, -2.0, 0.5], dtype=dtype)
    matrix = torch.stack([g, -3 * g])
    assert torch.equal(CAGrad(c=1.5)(matrix), torch.zeros(3, dtype=dtype))
    # With c < 1 the ball excludes 0: the best is to move from -g towards g by c ||g||.
    result = CAGrad(c=0.5, norm_eps=0.0)(matrix.double())
    assert torch.allclose(result, -0.5 * g.double())
