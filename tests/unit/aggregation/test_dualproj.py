import pytest
import torch
from torch import Tensor
from unit.linalg._dual_cone_reference import brute_force_projection

from torchjd.aggregation import DualProj, DualProjWeighting, Mean
from torchjd.linalg import default_kkt_tolerance

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
@pytest.mark.parametrize("reg_eps", [0.0, 1e-4])
def test_dualproj_never_conflicts(reg_eps: float, dtype: torch.dtype):
    for matrix in random_matrices(dtype):
        result = DualProj(reg_eps=reg_eps)(matrix)
        assert result.dtype == dtype
        # The ridge relaxes J A(J) >= 0 by reg_eps tr(G) max_j |w_j| (see test_upgrad.py).
        weights = DualProjWeighting(reg_eps=reg_eps)(matrix @ matrix.T)
        bound = reg_eps * float((matrix * matrix).sum() * weights.abs().max())
        # The projector's guarantee: (G v)_i >= -τ max_j G_jj max_j |v_j|.
        squared_norms = (matrix * matrix).sum(dim=1)
        bound += default_kkt_tolerance(dtype) * float(squared_norms.max() * weights.abs().max())
        assert float((matrix @ result).min()) >= -bound


@pytest.mark.parametrize("m", [2, 3, 4, 6])
def test_dualproj_weights_match_brute_force(m: int):
    generator = torch.Generator().manual_seed(m)
    for _ in range(3):
        matrix = torch.randn(m, 5, generator=generator, dtype=torch.float64)
        gramian = matrix @ matrix.T
        regularized = gramian / gramian.trace() + 1e-4 * torch.eye(m, dtype=torch.float64)
        expected, _ = brute_force_projection(
            regularized, torch.full((m,), 1.0 / m, dtype=torch.float64)
        )
        torch.testing.assert_close(DualProjWeighting()(gramian), expected, rtol=1e-5, atol=1e-5)


def test_dualproj_on_two_conflicting_rows_by_hand():
    # G = [[18, -22], [-22, 38]]; the mean conflicts with row 1 only, so v_1 is free and v_2 = 1/2:
    # (H v)_1 = 0 gives v_1 = (1/2) H_12 / H_11 with H = G / 56 + 1e-4 I.
    matrix = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]], dtype=torch.float64)
    v1 = 0.5 * (22 / 56) / (18 / 56 + 1e-4)
    torch.testing.assert_close(
        DualProj()(matrix), torch.tensor([v1, 0.5], dtype=torch.float64) @ matrix
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
    aggregator = DualProj(norm_eps=0.0)
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


def test_dualproj_repr_and_str():
    assert str(DualProj()) == "DualProj"
    assert repr(DualProj(reg_eps=0.5)).startswith(
        "DualProj(pref_vector=None, norm_eps=0.0001, reg_eps=0.5, "
    )


@pytest.mark.parametrize(
    ["kwargs", "error"],
    [
        ({"norm_eps": -1.0}, ValueError),
        ({"reg_eps": "x"}, TypeError),
        ({"pref_vector": torch.ones(2, 2)}, ValueError),
    ],
)
def test_dualproj_rejects_invalid_parameters(kwargs: dict, error: type[Exception]):
    with pytest.raises(error, match=next(iter(kwargs))):
        DualProj(**kwargs)
