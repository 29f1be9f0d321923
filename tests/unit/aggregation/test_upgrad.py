import pytest
import torch
from torch import Tensor
from unit.linalg._dual_cone_reference import brute_force_projection

from torchjd.aggregation import Mean, UPGrad, UPGradWeighting
from torchjd.linalg import (
    ActiveSetDualConeProjector,
    DualConeProjector,
    default_kkt_tolerance,
)

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
        (64, 40, 40),
    ]:
        low_rank = torch.randn(m, rank, generator=generator) @ torch.randn(
            rank, n, generator=generator
        )
        scales = torch.exp(torch.randn(m, 1, generator=generator))
        matrices.append((low_rank * scales).to(dtype))
    return matrices


def reference_weights(
    gramian: Tensor, pref: Tensor, norm_eps: float = 1e-4, reg_eps: float = 1e-4
) -> Tensor:
    """UPGrad's weights with every projection solved by brute force over active sets."""
    g = gramian.double()
    trace = float(g.trace())
    g = (g / trace if trace >= norm_eps else torch.zeros_like(g)) + reg_eps * torch.eye(
        len(g), dtype=torch.float64
    )
    return sum(
        brute_force_projection(g, p * torch.eye(len(g), dtype=torch.float64)[i])[0]
        for i, p in enumerate(pref.double())
    )


def assert_never_conflicts(matrix: Tensor, result: Tensor, reg_eps: float) -> None:
    # With the ridge, the KKT conditions hold for G / tr(G) + reg_eps I, not for G: each product
    # J_i . A(J) can dip to -reg_eps tr(G) max_j |w_j|, on top of the solver's tolerance.
    # The projector guarantees (G v)_i >= -τ max_j G_jj max_j |v_j| for each of the m projections,
    # and the weights are the sum of those v >= 0.
    weights_bound = float(UPGradWeighting(reg_eps=reg_eps)(matrix @ matrix.T).abs().max())
    bound = reg_eps * float((matrix * matrix).sum()) * weights_bound
    squared_norms = (matrix * matrix).sum(dim=1)
    bound += (
        default_kkt_tolerance(matrix.dtype)
        * float(squared_norms.max())
        * len(matrix)
        * weights_bound
    )
    assert float((matrix @ result).min()) >= -bound


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reg_eps", [0.0, 1e-4])
def test_upgrad_never_conflicts(reg_eps: float, dtype: torch.dtype):
    aggregator = UPGrad(reg_eps=reg_eps)
    # Without the ridge, the 64-row singular case takes the slow exact path: keep the test short.
    for matrix in random_matrices(dtype)[: None if reg_eps > 0 else -1]:
        result = aggregator(matrix)
        assert result.dtype == dtype and result.shape == (matrix.shape[1],)
        assert_never_conflicts(matrix, result, reg_eps)


@pytest.mark.parametrize("m", [2, 3, 4, 5])
def test_upgrad_weights_match_brute_force(m: int):
    generator = torch.Generator().manual_seed(m)
    for _ in range(3):
        matrix = torch.randn(m, 6, generator=generator, dtype=torch.float64)
        gramian = matrix @ matrix.T
        expected = reference_weights(gramian, torch.full((m,), 1.0 / m, dtype=torch.float64))
        torch.testing.assert_close(UPGradWeighting()(gramian), expected, rtol=1e-6, atol=1e-7)
        pref = torch.rand(m, generator=generator, dtype=torch.float64)
        expected = reference_weights(gramian, pref)
        torch.testing.assert_close(
            UPGradWeighting(pref_vector=pref)(gramian), expected, rtol=1e-6, atol=1e-7
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_upgrad_on_two_conflicting_rows_by_hand(dtype: torch.dtype):
    # G = [[18, -22], [-22, 38]], tr = 56, H = G / 56 + 1e-4 I. Projecting e_1 / 2 keeps v_1 = 1/2
    # and sets v_2 = (1/2)(22/56) / H_22; symmetrically for e_2 / 2.
    matrix = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]], dtype=dtype)
    h11, h22, h12 = 18 / 56 + 1e-4, 38 / 56 + 1e-4, 22 / 56
    weights = torch.tensor([0.5 + 0.5 * h12 / h11, 0.5 + 0.5 * h12 / h22], dtype=dtype)
    torch.testing.assert_close(UPGrad()(matrix), weights @ matrix)
    torch.testing.assert_close(
        UPGrad()(matrix), torch.tensor([0.2929, 1.9004, 1.9004], dtype=dtype), atol=1e-4, rtol=0
    )


def test_upgrad_is_the_mean_when_no_rows_conflict():
    matrix = torch.tensor([[1.0, 2.0, 0.0], [2.0, 1.0, 1.0], [0.5, 0.5, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(UPGrad()(matrix), Mean()(matrix))


def test_upgrad_of_one_row_is_that_row():
    matrix = torch.tensor([[3.0, -1.0, 2.0]])
    torch.testing.assert_close(UPGrad()(matrix), matrix[0])


@pytest.mark.parametrize("shape", [(1, 3), (2, 3), (5, 4)])
def test_upgrad_of_zero_matrix_is_zero(shape: tuple[int, int]):
    assert torch.equal(UPGrad()(torch.zeros(shape)), torch.zeros(shape[1]))


def test_upgrad_of_no_rows_is_zero():
    assert torch.equal(UPGrad()(torch.zeros(0, 4)), torch.zeros(4))


@pytest.mark.parametrize("dtype", DTYPES)
def test_upgrad_is_invariant_to_row_permutations(dtype: torch.dtype):
    aggregator = UPGrad()
    generator = torch.Generator().manual_seed(1)
    for matrix in random_matrices(dtype)[1:6]:
        permutation = torch.randperm(matrix.shape[0], generator=generator)
        rtol, atol = (1e-3, 1e-4) if dtype == torch.float32 else (1e-6, 1e-8)
        scale = float(matrix.abs().max())
        torch.testing.assert_close(
            aggregator(matrix[permutation]), aggregator(matrix), rtol=rtol, atol=atol * scale
        )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("factor", [1e-3, 7.0, 1e4])
def test_upgrad_scales_with_the_matrix(factor: float, dtype: torch.dtype):
    # norm_eps = 0: with the default, a matrix whose squared norm is below 1e-4 counts as zero.
    aggregator = UPGrad(norm_eps=0.0)
    for matrix in random_matrices(dtype)[1:6]:
        rtol = 1e-3 if dtype == torch.float32 else 1e-6
        expected = factor * aggregator(matrix)
        torch.testing.assert_close(
            aggregator(factor * matrix),
            expected,
            rtol=rtol,
            atol=rtol * float(expected.abs().max()),
        )


def test_upgrad_handles_duplicated_and_opposite_rows():
    row = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    other = torch.tensor([0.3, 1.0, 1.0], dtype=torch.float64)
    matrix = torch.stack([row, row, -row, other])
    for reg_eps in [0.0, 1e-4]:
        assert_never_conflicts(matrix, UPGrad(reg_eps=reg_eps)(matrix), reg_eps)


def test_upgrad_weighting_accepts_a_gramian_and_matches_the_aggregator():
    matrix = random_matrices(torch.float64)[4]
    weights = UPGradWeighting()(matrix @ matrix.T)
    torch.testing.assert_close(weights @ matrix, UPGrad()(matrix))


def test_upgrad_is_differentiable_with_constant_weights():
    matrix = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]], requires_grad=True)
    result = UPGrad()(matrix)
    result.sum().backward()
    weights = UPGradWeighting()((matrix @ matrix.T).detach())
    torch.testing.assert_close(matrix.grad, weights[:, None].expand(2, 3))


def test_upgrad_uses_the_given_projector():
    calls = []

    class Recording(DualConeProjector):
        def solve(self, gramian: Tensor, vectors: Tensor) -> Tensor:
            calls.append(vectors.shape)
            return ActiveSetDualConeProjector()(gramian, vectors)

    matrix = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    torch.testing.assert_close(UPGrad(projector=Recording())(matrix), UPGrad()(matrix))
    assert calls == [torch.Size([2, 2])]


def test_upgrad_repr_str_and_hyper_parameters():
    aggregator = UPGrad(pref_vector=torch.tensor([1.0, 2.0]), norm_eps=0.01, reg_eps=0.0)
    assert str(aggregator) == "UPGrad"
    assert repr(aggregator).startswith(
        "UPGrad(pref_vector=tensor([1., 2.]), norm_eps=0.01, reg_eps=0.0, projector="
    )
    assert aggregator.norm_eps == 0.01 and aggregator.reg_eps == 0.0
    assert torch.equal(aggregator.pref_vector, torch.tensor([1.0, 2.0]))
    assert "weighting.gramian_weighting.pref_vector" in aggregator.state_dict()
    assert repr(UPGrad()) == (
        "UPGrad(pref_vector=None, norm_eps=0.0001, reg_eps=0.0001, "
        "projector=ActiveSetDualConeProjector(tolerance=None))"
    )


@pytest.mark.parametrize(
    ["kwargs", "error", "name"],
    [
        ({"norm_eps": -1.0}, ValueError, "norm_eps"),
        ({"norm_eps": "0.1"}, TypeError, "norm_eps"),
        ({"reg_eps": float("nan")}, ValueError, "reg_eps"),
        ({"reg_eps": True}, TypeError, "reg_eps"),
        ({"pref_vector": [1.0, 2.0]}, TypeError, "pref_vector"),
        ({"pref_vector": torch.ones(2, 2)}, ValueError, "pref_vector"),
        ({"pref_vector": torch.tensor([1.0, float("inf")])}, ValueError, "pref_vector"),
        ({"projector": "quadprog"}, TypeError, "projector"),
    ],
)
def test_upgrad_rejects_invalid_parameters(kwargs: dict, error: type[Exception], name: str):
    with pytest.raises(error, match=name):
        UPGrad(**kwargs)
    with pytest.raises(error, match=name):
        UPGradWeighting(**kwargs)


def test_upgrad_rejects_a_pref_vector_of_the_wrong_length():
    with pytest.raises(ValueError, match="pref_vector"):
        UPGrad(pref_vector=torch.ones(3))(torch.ones(2, 4))
