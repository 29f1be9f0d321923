import inspect

import pytest
import torch
from torch import Tensor
from unit.linalg._dual_cone_reference import brute_force_projection

from torchjd.aggregation import DualProj, DualProjWeighting, Mean
from torchjd.linalg import QuadprogProjector

DTYPES = [torch.float32, torch.float64]


def random_matrices(dtype: torch.dtype) -> list[Tensor]:
    generator = torch.Generator().manual_seed(0)
    matrices = []
    for m, n, rank in [
        (1, 5, 1),
        (2, 3, 2),
        (3, 7, 3),
        (5, 4, 4),
        (8, 50, 8),
        (10, 6, 3),
        (32, 100, 32),
    ]:
        low_rank = torch.randn(m, rank, generator=generator) @ torch.randn(
            rank, n, generator=generator
        )
        matrices.append((low_rank * torch.exp(torch.randn(m, 1, generator=generator))).to(dtype))
    return matrices


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e-30, 1.0, 1e30])
def test_dualproj_never_conflicts(scale: float, dtype: torch.dtype):
    if dtype == torch.float32:
        # float32 holds the Gramians of matrices of scale 1e-17..1e17 only (they underflow to 0 or
        # overflow to inf beyond).
        scale = min(max(scale, 1e-15), 1e15)
    factor = 1e-10 if dtype == torch.float64 else 1e-5
    for matrix in random_matrices(dtype):
        matrix = matrix * scale
        result = DualProj()(matrix)
        assert result.dtype == dtype
        squared_norms = (matrix.double() ** 2).sum(dim=1)
        assert float((matrix.double() @ result.double()).min()) >= -factor * float(
            squared_norms.max()
        )


@pytest.mark.parametrize("m", [2, 3, 4, 6])
def test_dualproj_weights_match_brute_force(m: int):
    generator = torch.Generator().manual_seed(m)
    for _ in range(3):
        matrix = torch.randn(m, 5, generator=generator, dtype=torch.float64)
        gramian = matrix @ matrix.T
        p = torch.full((m,), 1.0 / m, dtype=torch.float64)
        expected, _ = brute_force_projection(gramian, p)
        torch.testing.assert_close(DualProjWeighting()(gramian), expected, rtol=1e-7, atol=1e-9)
        regularized = gramian / gramian.trace() + 1e-4 * torch.eye(m, dtype=torch.float64)
        expected, _ = brute_force_projection(regularized, p)
        torch.testing.assert_close(
            DualProjWeighting(projector=QuadprogProjector())(gramian),
            expected,
            rtol=1e-7,
            atol=1e-9,
        )


def test_dualproj_on_two_conflicting_rows_by_hand():
    # G = [[18, -22], [-22, 38]]; the mean conflicts with row 1 only, so v_1 is free and v_2 = 1/2:
    # (G v)_1 = 0 gives v_1 = (1/2) G_12 / G_11; 0.18 (QuadprogProjector) uses
    # H = G / 56 + 1e-4 I instead.
    matrix = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]], dtype=torch.float64)
    v1 = 0.5 * 22 / 18
    torch.testing.assert_close(
        DualProj()(matrix), torch.tensor([v1, 0.5], dtype=torch.float64) @ matrix
    )
    v1 = 0.5 * (22 / 56) / (18 / 56 + 1e-4)
    torch.testing.assert_close(
        DualProj(projector=QuadprogProjector())(matrix),
        torch.tensor([v1, 0.5], dtype=torch.float64) @ matrix,
    )


def test_dualproj_is_the_mean_when_the_mean_does_not_conflict():
    matrix = torch.tensor([[1.0, 2.0, 0.0], [2.0, -0.5, 1.0], [0.5, 0.5, 3.0]], dtype=torch.float64)
    assert float((matrix @ Mean()(matrix)).min()) > 0
    torch.testing.assert_close(DualProj()(matrix), Mean()(matrix))


def test_dualproj_of_zero_matrix_and_of_one_row():
    assert torch.equal(DualProj()(torch.zeros(3, 4)), torch.zeros(4))
    torch.testing.assert_close(DualProj()(torch.tensor([[1.0, -2.0]])), torch.tensor([1.0, -2.0]))


@pytest.mark.parametrize("factor", [1e-3, 1e4])
def test_dualproj_scales_with_the_matrix(factor: float):
    aggregator = DualProj()
    for matrix in random_matrices(torch.float64)[1:6]:
        expected = factor * aggregator(matrix)
        torch.testing.assert_close(
            aggregator(factor * matrix),
            expected,
            rtol=1e-6,
            atol=1e-6 * float(expected.abs().max()),
        )


def test_dualproj_uses_the_pref_vector():
    matrix = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(
        DualProj(pref_vector=torch.tensor([2.0, 1.0]))(matrix), torch.tensor([2.0, 1.0])
    )


def test_dualproj_repr_str_and_settable_hyper_parameters():
    assert str(DualProj()) == "DualProj"
    assert repr(DualProj()) == (
        "DualProj(pref_vector=None, projector=ActiveSetDualConeProjector(tolerance=None))"
    )
    assert list(inspect.signature(DualProj).parameters) == ["pref_vector", "projector"]
    assert list(inspect.signature(DualProjWeighting).parameters) == ["pref_vector", "projector"]
    matrix = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]], dtype=torch.float64)
    aggregator = DualProj()
    exact = aggregator(matrix)
    aggregator.projector = QuadprogProjector()
    torch.testing.assert_close(aggregator(matrix), DualProj(projector=QuadprogProjector())(matrix))
    aggregator.projector = None
    torch.testing.assert_close(aggregator(matrix), exact)
    aggregator.pref_vector = torch.tensor([2.0, 1.0])
    torch.testing.assert_close(aggregator(torch.eye(2)), torch.tensor([2.0, 1.0]))


@pytest.mark.parametrize(
    ["kwargs", "error"],
    [
        ({"pref_vector": [1.0]}, TypeError),
        ({"projector": "x"}, TypeError),
        ({"pref_vector": torch.ones(2, 2)}, ValueError),
    ],
)
def test_dualproj_rejects_invalid_parameters(kwargs: dict, error: type[Exception]):
    with pytest.raises(error, match=next(iter(kwargs))):
        DualProj(**kwargs)
    with pytest.raises(error, match=next(iter(kwargs))):
        setattr(DualProj(), next(iter(kwargs)), next(iter(kwargs.values())))


@pytest.mark.parametrize("m", [2, 3, 5, 16, 20])
def test_dualproj_non_finite_overflow_half_precision_and_integers(m: int):
    matrix = torch.randn(m, 40, generator=torch.Generator().manual_seed(m))
    bad = matrix.clone()
    bad[0, 0] = float("inf")
    assert not bool(torch.isfinite(DualProj()(bad)).all())
    assert not bool(torch.isfinite(DualProj()(matrix * 1e19)).all())  # G overflows float32
    assert not bool(torch.isfinite(DualProj()(matrix.double() * 1e155)).all())
    for dtype in (torch.float16, torch.bfloat16):
        result = DualProj()(matrix.to(dtype))
        assert result.dtype == dtype and bool(torch.isfinite(result).all())
    with pytest.raises(TypeError, match="matrix"):
        DualProj()(matrix.to(torch.int64))
