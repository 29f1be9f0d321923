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
)
from torchjd.linalg import ActiveSetDualConeProjector


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
