import pytest
import torch
from torch import Tensor
from unit.linalg._dual_cone_reference import brute_force_projection, kkt_violations

import torchjd.linalg._lawson_hanson as lawson_hanson
from torchjd.linalg._lawson_hanson import (
    pivoted_cholesky,
    solve_by_positive_null_combination,
    solve_in_factor_space,
)

TOLERANCE = 1.8e-12


def low_rank_factor(m: int, rank: int, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(m, rank, generator=generator, dtype=torch.float64)


def bounds(batch: int, m: int, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed + 1)
    basis = torch.eye(m, dtype=torch.float64)[:batch]
    mixed = torch.randn(batch, m, generator=generator, dtype=torch.float64)
    return torch.cat([basis, mixed])


def assert_kkt(gramian: Tensor, lower: Tensor, y: Tensor, tolerance: float = 1e-10) -> None:
    feasible, negative, complementarity = kkt_violations(gramian, lower, y)
    assert feasible
    assert negative <= tolerance
    assert complementarity <= tolerance


@pytest.mark.parametrize(["m", "rank"], [(6, 6), (20, 5), (40, 40), (100, 10)])
def test_pivoted_cholesky_reproduces_the_matrix(m: int, rank: int):
    rows = low_rank_factor(m, rank, m)
    matrix = rows @ rows.T
    factor = pivoted_cholesky(matrix, 1e-13 * float(matrix.diagonal().max()), m)
    assert factor is not None
    assert factor.shape == (m, rank)
    torch.testing.assert_close(factor @ factor.T, matrix, rtol=0.0, atol=1e-10 * matrix.abs().max())


def test_pivoted_cholesky_stops_beyond_max_rank_and_on_zero():
    rows = low_rank_factor(30, 12, 0)
    assert pivoted_cholesky(rows @ rows.T, 1e-12, 11) is None
    assert pivoted_cholesky(torch.zeros(5, 5, dtype=torch.float64), 1e-12, 5).shape == (5, 0)


@pytest.mark.parametrize(["m", "rank"], [(4, 2), (5, 5), (6, 3)])
def test_factor_space_solution_matches_brute_force(m: int, rank: int):
    factor = low_rank_factor(m, rank, 10 * m + rank)
    gramian = factor @ factor.T
    lower = bounds(m, m, m)
    y = solve_in_factor_space(factor, lower, TOLERANCE)
    for bound, solution in zip(lower, y):
        _, optimum = brute_force_projection(gramian, bound)
        objective = float(solution @ gramian @ solution)
        assert objective <= optimum + 1e-10 * max(1.0, abs(optimum))
    assert_kkt(gramian, lower, y)


@pytest.mark.parametrize(["m", "rank"], [(30, 30), (60, 12), (120, 40)])
def test_factor_space_solution_satisfies_kkt(m: int, rank: int):
    factor = low_rank_factor(m, rank, m + rank)
    # Rows of different norms, as in real Jacobians.
    factor = factor * torch.linspace(0.1, 3.0, m, dtype=torch.float64)[:, None]
    gramian = factor @ factor.T
    lower = bounds(m, m, rank)
    assert_kkt(gramian, lower, solve_in_factor_space(factor, lower, TOLERANCE))


def test_warm_start_and_chunks_reach_the_same_optimum(monkeypatch: pytest.MonkeyPatch):
    factor = low_rank_factor(50, 20, 3)
    gramian = factor @ factor.T
    lower = bounds(50, 50, 3)
    cold = solve_in_factor_space(factor, lower, TOLERANCE)
    # A start near the solution and one far from it (the bound itself).
    for start in [cold + 1e-2 * torch.rand_like(cold), lower.clone()]:
        warm = solve_in_factor_space(factor, lower, TOLERANCE, start=start)
        assert_kkt(gramian, lower, warm)
    # A state budget for 3 vectors at a time gives the same solutions as one batch.
    monkeypatch.setattr(lawson_hanson, "_STATE_BUDGET", 3 * 2 * 20 * 20 * 8)
    chunked = solve_in_factor_space(factor, lower, TOLERANCE)
    objectives = ((chunked @ gramian) * chunked).sum(dim=1)
    expected = ((cold @ gramian) * cold).sum(dim=1)
    torch.testing.assert_close(objectives, expected, rtol=1e-9, atol=1e-12)


def test_positive_null_combination_solves_rows_that_sum_to_zero():
    rows = low_rank_factor(40, 15, 7)
    rows[-1] = -rows[:-1].sum(dim=0)  # a positive combination (all ones) equal to 0
    lower = bounds(40, 40, 7)
    y = solve_by_positive_null_combination(rows, lower, TOLERANCE)
    assert y is not None
    assert bool((y >= lower).all())
    # Every projection is zero: F^T y = 0 relative to the size of y.
    residual = (y @ rows).norm(dim=1) / (y.abs().amax(dim=1) * rows.norm(dim=1).max())
    assert float(residual.max()) <= 1e-9


def test_positive_null_combination_is_none_for_rows_in_a_half_space():
    rows = low_rank_factor(40, 15, 8)
    rows[:, 0] = rows[:, 0].abs() + 0.1  # every row has a positive first coordinate
    assert solve_by_positive_null_combination(rows, bounds(40, 40, 8), TOLERANCE) is None


def test_nearly_dependent_passive_rows_are_solved_to_rounding():
    # Parallel rows of very different norms make C_PP nearly singular: one refinement of the kept
    # inverse left KKT violations near 1e-8 here, a few steps reach the rounding level.
    violations = []
    for seed in range(6):
        generator = torch.Generator().manual_seed(seed)
        rows = torch.randn(53, 14, generator=generator, dtype=torch.float64)
        rows[26:] = rows[:27] * torch.rand(27, 1, generator=generator, dtype=torch.float64)
        rows = rows * torch.exp(2.0 * torch.randn(53, 1, generator=generator, dtype=torch.float64))
        gramian = rows @ rows.T
        scale = gramian.diagonal().sqrt()
        correlation = gramian / scale[:, None] / scale[None, :]
        factor = pivoted_cholesky(correlation, 256 * torch.finfo(torch.float64).eps, 53)
        lower = bounds(53, 53, seed)
        y = solve_in_factor_space(factor, lower, TOLERANCE)
        violations.append(max(kkt_violations(correlation, lower, y)[1:]))
    assert max(violations) <= TOLERANCE
