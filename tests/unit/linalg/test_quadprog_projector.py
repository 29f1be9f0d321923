"""
QuadprogProjector, the compatibility projector, against an independent solve of torchjd 0.18's
regularized problem: brute force over the active sets of ``H = G / tr(G) + reg_eps I``.
"""

import pytest
import torch
from torch import Tensor
from unit.linalg._dual_cone_reference import brute_force_projection, kkt_violations
from unit.linalg.test_dual_cone import DTYPES, random_gramian

from torchjd.linalg import QuadprogProjector


def regularized(gramian: Tensor, norm_eps: float, reg_eps: float) -> Tensor:
    """0.18's preprocessing, written out: G / tr(G) (zeros below norm_eps) plus the ridge."""

    g = gramian.to(torch.float64)
    trace = float(g.trace())
    normalized = g / trace if trace >= norm_eps else torch.zeros_like(g)
    return normalized + reg_eps * torch.eye(g.shape[0], dtype=torch.float64)


def bounds(m: int, generator: torch.Generator) -> Tensor:
    """UPGrad's bounds p_i e_i, DualProj's p and random (partly negative) vectors."""

    p = torch.rand(m, generator=generator, dtype=torch.float64) + 0.1
    random = torch.randn(3, m, generator=generator, dtype=torch.float64)
    return torch.cat([torch.diag(p), p[None, :], random])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e20])
def test_quadprog_projector_matches_brute_force_on_the_regularized_gramian(
    m: int, scale: float, dtype: torch.dtype
):
    # The regularized problem is strictly convex: its solution is unique, so compare it directly.
    generator = torch.Generator().manual_seed(m)
    projector = QuadprogProjector()
    for rank in sorted({1, m, 2 * m}):
        gramian = random_gramian(m, rank, torch.float64, generator) * scale
        u = bounds(m, generator)
        h = regularized(gramian, 1e-4, 1e-4)
        expected = torch.stack([brute_force_projection(h, row)[0] for row in u])
        # One call per vector (the Python-float path) and one for the batch (the tensor path).
        batched = projector(u.to(dtype), gramian.to(dtype))
        single = torch.stack([projector(row.to(dtype), gramian.to(dtype)) for row in u])
        rtol = 1e-5 if dtype == torch.float64 else 1e-4
        for v in (batched, single):
            assert v.dtype == dtype
            difference = (v.double() - expected).abs().amax(dim=1)
            reference = expected.abs().amax(dim=1) + u.abs().amax(dim=1)
            assert bool((difference <= rtol * reference).all())


@pytest.mark.parametrize("m", [3, 8, 16, 17, 40])
def test_quadprog_projector_satisfies_kkt_of_the_regularized_problem_at_larger_m(m: int):
    generator = torch.Generator().manual_seed(10 + m)
    projector = QuadprogProjector()
    for rank in sorted({1, m // 2, 2 * m}):
        gramian = random_gramian(m, rank, torch.float64, generator)
        u = bounds(m, generator)
        v = projector(u, gramian)
        feasible, negative, complementarity = kkt_violations(regularized(gramian, 1e-4, 1e-4), u, v)
        assert feasible and negative <= 1e-9 and complementarity <= 1e-9


@pytest.mark.parametrize("m", [2, 3, 5, 8, 17])
def test_quadprog_projector_sum_of_basis_projections_matches_brute_force(m: int):
    generator = torch.Generator().manual_seed(20 + m)
    projector = QuadprogProjector(norm_eps=1e-4, reg_eps=1e-3)
    gramian = random_gramian(m, max(m // 2, 1), torch.float64, generator)
    h = regularized(gramian, 1e-4, 1e-3)
    p = torch.randn(m, generator=generator, dtype=torch.float64)  # signed: p_i <= 0 gives 0
    if m <= 8:
        basis = torch.eye(m, dtype=torch.float64)
        expected = sum(brute_force_projection(h, p_i * e)[0] for p_i, e in zip(p, basis))
    else:
        expected = projector(torch.diag(p), gramian).sum(dim=0)  # brute force is 2^m solves
    torch.testing.assert_close(projector.sum_of_basis_projections(p, gramian), expected)


@pytest.mark.parametrize("m", [1, 2, 3, 5, 16, 20])
def test_below_norm_eps_the_gramian_is_treated_as_zero(m: int):
    # H = reg_eps I: the solution is max(u, 0), which 0.18 returns too.
    generator = torch.Generator().manual_seed(m)
    gramian = random_gramian(m, m, torch.float64, generator)
    gramian = gramian / gramian.trace() * 0.5e-4
    u = torch.randn(4, m, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(QuadprogProjector()(u, gramian), u.clamp(min=0.0))
    torch.testing.assert_close(QuadprogProjector()(u, gramian * 0.0), u.clamp(min=0.0))


def test_quadprog_projector_parameters_are_keyword_only_validated_and_settable():
    projector = QuadprogProjector()
    assert (projector.norm_eps, projector.reg_eps) == (1e-4, 1e-4)
    assert repr(projector) == "QuadprogProjector(norm_eps=0.0001, reg_eps=0.0001)"
    with pytest.raises(TypeError):
        QuadprogProjector(1e-4)  # type: ignore[misc]
    for name, value, error in [
        ("norm_eps", -1.0, ValueError),
        ("reg_eps", float("inf"), ValueError),
        ("reg_eps", "1e-4", TypeError),
        ("norm_eps", True, TypeError),
    ]:
        with pytest.raises(error, match=name):
            QuadprogProjector(**{name: value})
        with pytest.raises(error, match=name):
            setattr(projector, name, value)
    projector.reg_eps = 0.5
    gramian = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    # H = G / 2 + I / 2, u = e_1: v_2 minimizes v_2² - v_2 (times 1/2... plus constants): 1/2.
    torch.testing.assert_close(
        projector(torch.tensor([1.0, 0.0], dtype=torch.float64), gramian),
        torch.tensor([1.0, 0.5], dtype=torch.float64),
    )


def test_quadprog_projector_matches_quadprog_when_it_is_installed():
    quadprog = pytest.importorskip("quadprog", reason="quadprog is a benchmark-only package")
    import numpy as np

    generator = torch.Generator().manual_seed(0)
    for m in [2, 5, 12, 30]:
        gramian = random_gramian(m, max(m // 3, 1), torch.float64, generator)
        h = regularized(gramian, 1e-4, 1e-4).numpy()
        for u in bounds(m, generator):
            expected = quadprog.solve_qp(h, np.zeros(m), np.eye(m), u.numpy(), 0)[0]
            actual = QuadprogProjector()(u, gramian).numpy()
            scale = np.abs(expected).max() + float(u.abs().max())
            assert np.abs(actual - expected).max() <= 1e-5 * scale
