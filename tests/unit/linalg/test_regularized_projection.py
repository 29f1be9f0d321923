"""
The fast path of UPGrad and DualProj (``project_regularized``) against the general projector on the
regularized Gramian, the brute-force reference and the KKT conditions.
"""

import pytest
import torch
from unit.linalg._dual_cone_reference import brute_force_projection
from unit.linalg.test_dual_cone import DTYPES, assert_kkt, random_gramian

from torchjd.aggregation._dual_cone_utils import (
    normalize_and_regularize,
    project_regularized,
    sum_of_basis_projections_regularized,
)
from torchjd.linalg import ActiveSetDualConeProjector
from torchjd.linalg._dual_cone import _pivot, _to_unit_diagonal


def bounds(m: int, dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    """UPGrad's bounds p_i e_i, DualProj's p and random (partly negative) vectors."""

    p = torch.rand(m, generator=generator, dtype=torch.float64) + 0.1
    random = torch.randn(5, m, generator=generator, dtype=torch.float64)
    return torch.cat([torch.diag(p), p[None, :], random]).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [2, 3, 4, 5, 6, 8, 12, 16, 17])
@pytest.mark.parametrize("eps", [(0.0001, 0.0001), (0.0, 0.0), (0.0001, 0.0)])
def test_fast_path_satisfies_kkt(m: int, dtype: torch.dtype, eps: tuple[float, float]):
    norm_eps, reg_eps = eps
    generator = torch.Generator().manual_seed(m)
    projector = ActiveSetDualConeProjector()
    for rank in sorted({1, max(m // 2, 1), m, 2 * m}):
        for scale in [1e-30, 1.0, 1e30]:
            gramian = (random_gramian(m, rank, torch.float64, generator) * scale).to(dtype)
            u = bounds(m, dtype, generator)
            v = project_regularized(projector, gramian, norm_eps, reg_eps, u)
            assert v.dtype == dtype and v.shape == u.shape
            regularized = normalize_and_regularize(gramian.double(), norm_eps, reg_eps)
            assert_kkt(regularized, u, v)
            expected = projector(regularized.to(dtype), u)
            # Both are exact to the tolerance: compare in the norm of the regularized Gramian.
            difference = (v - expected).double()
            distance = ((difference @ regularized) * difference).sum(dim=1).clamp(min=0.0).sqrt()
            reference = (expected.double().abs().amax(dim=1) + 1.0) * float(
                regularized.diagonal().max()
            ) ** 0.5
            assert bool((distance <= 2e-2 * reference).all())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [3, 4, 5, 6])
def test_fast_path_matches_brute_force(m: int, dtype: torch.dtype):
    generator = torch.Generator().manual_seed(200 + m)
    projector = ActiveSetDualConeProjector()
    for _ in range(4):
        gramian = random_gramian(m, m + 2, torch.float64, generator)
        u = bounds(m, torch.float64, generator)
        v = project_regularized(projector, gramian.to(dtype), 0.0001, 0.0001, u.to(dtype))
        regularized = normalize_and_regularize(gramian, 0.0001, 0.0001)
        for u_row, v_row in zip(u, v):
            expected, _ = brute_force_projection(regularized, u_row)
            rtol = 1e-4 if dtype == torch.float32 else 1e-9
            assert torch.allclose(v_row.double(), expected, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("m", [3, 5, 16])
def test_fast_path_handles_zero_and_below_norm_eps_gramians(m: int):
    u = torch.randn(4, m, generator=torch.Generator().manual_seed(m))
    for gramian in [torch.zeros(m, m), 1e-6 * torch.eye(m)]:
        v = project_regularized(ActiveSetDualConeProjector(), gramian, 0.0001, 0.0001, u)
        assert torch.equal(v, u.clamp(min=0.0))


def test_fast_path_accepts_a_single_vector_and_any_batch_shape():
    generator = torch.Generator().manual_seed(0)
    gramian = random_gramian(5, 3, torch.float32, generator)
    u = torch.randn(2, 3, 5, generator=generator)
    projector = ActiveSetDualConeProjector()
    batched = project_regularized(projector, gramian, 0.0001, 0.0001, u)
    single = project_regularized(projector, gramian, 0.0001, 0.0001, u[1, 2])
    assert batched.shape == u.shape and single.shape == (5,)
    assert torch.allclose(batched[1, 2], single, rtol=1e-4, atol=1e-5)


def _preferences(kind: str, m: int, generator: torch.Generator) -> torch.Tensor | None:
    if kind == "uniform":
        return None
    if kind == "positive":
        return torch.rand(m, generator=generator, dtype=torch.float64) + 0.1
    signed = torch.randn(m, generator=generator, dtype=torch.float64)
    signed[0] = 0.0
    return signed


def _distance_in_norm(regularized: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> float:
    difference = (a - b).double()
    return float((difference @ regularized @ difference).clamp(min=0.0).sqrt())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [2, 3, 4, 6, 7, 8, 12, 16, 17])
@pytest.mark.parametrize("kind", ["uniform", "positive", "signed"])
@pytest.mark.parametrize("eps", [(0.0001, 0.0001), (0.0001, 0.0)])
def test_sum_of_basis_projections_matches_the_projections(
    m: int, dtype: torch.dtype, kind: str, eps: tuple[float, float]
):
    """UPGrad's path against the m projections of p_i e_i, each checked against its KKT conditions."""

    norm_eps, reg_eps = eps
    generator = torch.Generator().manual_seed(300 + m)
    projector = ActiveSetDualConeProjector()
    for rank in sorted({1, max(m // 2, 1), m, 2 * m}):
        for scale in [1e-30, 1.0, 1e30]:
            gramian = (random_gramian(m, rank, torch.float64, generator) * scale).to(dtype)
            p = _preferences(kind, m, generator)
            weights = None if p is None else p.to(dtype)
            total = sum_of_basis_projections_regularized(
                projector, gramian, norm_eps, reg_eps, weights
            )
            assert total.dtype == dtype and total.shape == (m,)
            regularized = normalize_and_regularize(gramian.double(), norm_eps, reg_eps)
            bounds = torch.diag(torch.full((m,), 1.0 / m, dtype=torch.float64) if p is None else p)
            exact = ActiveSetDualConeProjector(tolerance=1e-12)(regularized, bounds)
            # At m = 2 the reference is a closed form: on a float32-rounded singular G (which can
            # be slightly indefinite) its rounding reaches about the float64 tolerance.
            assert_kkt(regularized, bounds, exact, factor=4.0)
            reference = (exact.abs().amax() + 1.0) * float(regularized.diagonal().max()) ** 0.5
            # Each projection is exact to the tolerance; for a singular G they may differ by a
            # vector of its kernel, which the norm of G does not see.
            assert _distance_in_norm(regularized, total, exact.sum(dim=0)) <= 2e-2 * reference


@pytest.mark.parametrize("m", [3, 5, 6, 8])
def test_sum_of_basis_projections_matches_brute_force(m: int):
    generator = torch.Generator().manual_seed(400 + m)
    for _ in range(4):
        gramian = random_gramian(m, m + 2, torch.float64, generator)
        p = torch.rand(m, generator=generator, dtype=torch.float64) + 0.1
        total = sum_of_basis_projections_regularized(
            ActiveSetDualConeProjector(), gramian, 0.0001, 0.0001, p
        )
        regularized = normalize_and_regularize(gramian, 0.0001, 0.0001)
        expected = sum(
            brute_force_projection(regularized, p[i] * torch.eye(m)[i].double())[0]
            for i in range(m)
        )
        assert torch.allclose(total, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("tolerance", [1e-4, 1e-15])
def test_pivoting_reports_exactly_the_vectors_it_solved(tolerance: float):
    """
    ``_pivot`` returns ``None`` only when every vector satisfies the KKT conditions of
    ``min y^T C y, y >= l``, and otherwise a mask that is true only for such vectors. A tolerance
    of 1e-15 disables the shortcut that trusts the solve and fails most vectors.
    """

    generator = torch.Generator().manual_seed(0)
    for m in [3, 6, 11, 16]:
        for rank in [1, m // 2, m + 3]:
            matrix = torch.randn(m, rank, generator=generator, dtype=torch.float64)
            gramian = matrix @ matrix.T
            correlation, _ = _to_unit_diagonal(gramian)
            lower = torch.cat(
                [
                    torch.eye(m, dtype=torch.float64),
                    torch.randn(4, m, generator=generator, dtype=torch.float64),
                ]
            )
            lower = lower / lower.abs().amax(dim=1, keepdim=True)
            q = lower @ correlation
            s, solved = _pivot(correlation, q, q < 0, tolerance)
            w = q + s @ correlation
            satisfied = (s >= 0).all(dim=1) & (w >= -tolerance).all(dim=1)
            satisfied &= ((w * s).abs() <= tolerance * (1 + s.abs().amax(dim=1, keepdim=True))).all(
                dim=1
            )
            claimed = torch.ones(len(q), dtype=torch.bool) if solved is None else solved
            assert bool((satisfied | ~claimed).all())


def test_fast_path_satisfies_kkt_with_duplicated_and_opposite_rows_and_no_ridge():
    """Near-duplicate rows without ridge make the pivoting systems nearly singular."""

    generator = torch.Generator().manual_seed(0)
    base = torch.randn(4, 50, generator=generator, dtype=torch.float64)
    matrix = torch.cat([base, base[:2] * (1 + 1e-13), -base[2:]])  # duplicated and opposite rows
    gramian = matrix @ matrix.T
    m = gramian.shape[0]
    u = torch.cat(
        [
            torch.eye(m, dtype=torch.float64) / m,
            torch.randn(3, m, generator=generator, dtype=torch.float64),
        ]
    )
    v = project_regularized(ActiveSetDualConeProjector(), gramian, 0.0001, 0.0, u)
    assert_kkt(normalize_and_regularize(gramian, 0.0001, 0.0), u, v)
