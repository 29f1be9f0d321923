import inspect

import pytest
import torch
from torch import Tensor
from unit.linalg._dual_cone_reference import brute_force_projection, kkt_violations

from torchjd.aggregation import Mean, UPGrad, UPGradWeighting
from torchjd.linalg import ActiveSetDualConeProjector, DualConeProjector, QuadprogProjector

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


def reference_weights(gramian: Tensor, pref: Tensor) -> Tensor:
    """UPGrad's weights with every projection solved by brute force over active sets."""
    g = gramian.double()
    return sum(
        brute_force_projection(g, p * torch.eye(len(g), dtype=torch.float64)[i])[0]
        for i, p in enumerate(pref.double())
    )


def assert_never_conflicts(matrix: Tensor, result: Tensor) -> None:
    # The promise of the default: (J @ A(J)).min() >= -c max_i |J_i|², c = 1e-10 (1e-5 in float32).
    factor = 1e-10 if matrix.dtype == torch.float64 else 1e-5
    squared_norms = (matrix.double() ** 2).sum(dim=1)
    products = matrix.double() @ result.double()
    assert float(products.min()) >= -factor * float(squared_norms.max())


def singular_matrices(dtype: torch.dtype) -> list[Tensor]:
    """Duplicated rows, a positive combination of rows equal to 0, m > n, rank 1."""
    generator = torch.Generator().manual_seed(1)
    matrices = []
    duplicated = torch.randn(12, 30, generator=generator, dtype=torch.float64)
    duplicated[6:] = duplicated[:6]
    matrices.append(duplicated)
    combination = torch.randn(20, 40, generator=generator, dtype=torch.float64)
    combination[-1] = -(torch.rand(19, 1, generator=generator, dtype=torch.float64)
                        * combination[:-1]).sum(dim=0)
    matrices.append(combination)
    matrices.append(torch.randn(40, 5, generator=generator, dtype=torch.float64))  # m > n
    rank_one = torch.randn(9, 1, generator=generator, dtype=torch.float64)
    matrices.append(rank_one * torch.randn(1, 7, generator=generator, dtype=torch.float64))
    return [matrix.to(dtype) for matrix in matrices]


@pytest.mark.parametrize("dtype", DTYPES)
def test_upgrad_never_conflicts(dtype: torch.dtype):
    aggregator = UPGrad()
    for matrix in random_matrices(dtype) + singular_matrices(dtype):
        result = aggregator(matrix)
        assert result.dtype == dtype and result.shape == (matrix.shape[1],)
        assert_never_conflicts(matrix, result)


@pytest.mark.parametrize("scale", [1e-30, 1e-10, 1e10, 1e30])
def test_upgrad_never_conflicts_at_every_scale(scale: float):
    aggregator = UPGrad()
    for matrix in random_matrices(torch.float64)[1:7] + singular_matrices(torch.float64):
        assert_never_conflicts(matrix * scale, aggregator(matrix * scale))
    # float32 holds the Gramians of matrices of scale 1e-17..1e17 only.
    scale = min(max(scale, 1e-15), 1e15)
    for matrix in random_matrices(torch.float32)[1:7] + singular_matrices(torch.float32):
        assert_never_conflicts(matrix * scale, aggregator(matrix * scale))


def test_upgrad_is_not_the_mean_below_0_18s_norm_eps():
    # 0.18 returned the mean (which conflicts) whenever tr(J J^T) < 1e-4; the default does not.
    matrix = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]], dtype=torch.float64) * 1e-3
    result = UPGrad()(matrix)
    assert_never_conflicts(matrix, result)
    assert float((matrix @ Mean()(matrix)).min()) < 0.0


@pytest.mark.parametrize("m", [2, 3, 4, 5])
def test_upgrad_weights_match_brute_force(m: int):
    generator = torch.Generator().manual_seed(m)
    for _ in range(3):
        matrix = torch.randn(m, 6, generator=generator, dtype=torch.float64)
        gramian = matrix @ matrix.T
        expected = reference_weights(gramian, torch.full((m,), 1.0 / m, dtype=torch.float64))
        torch.testing.assert_close(UPGradWeighting()(gramian), expected, rtol=1e-7, atol=1e-9)
        pref = torch.rand(m, generator=generator, dtype=torch.float64)
        expected = reference_weights(gramian, pref)
        torch.testing.assert_close(
            UPGradWeighting(pref_vector=pref)(gramian), expected, rtol=1e-7, atol=1e-9
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_upgrad_on_two_conflicting_rows_by_hand(dtype: torch.dtype):
    # G = [[18, -22], [-22, 38]]. Projecting e_1 / 2 keeps v_1 = 1/2 and sets v_2 to minimize
    # v^T G v: v_2 = (1/2)(22 / 38); symmetrically for e_2 / 2.
    matrix = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]], dtype=dtype)
    weights = torch.tensor([0.5 + 0.5 * 22 / 18, 0.5 + 0.5 * 22 / 38], dtype=dtype)
    torch.testing.assert_close(UPGrad()(matrix), weights @ matrix)
    assert float((matrix @ UPGrad()(matrix)).min()) >= -1e-5


@pytest.mark.parametrize("dtype", DTYPES)
def test_upgrad_with_the_quadprog_projector_is_0_18s_default_by_hand(dtype: torch.dtype):
    # 0.18 solves with H = G / tr(G) + 1e-4 I (tr = 56): v_2 = (1/2)(22 / 56) / H_22, and
    # printed [0.2929, 1.9004, 1.9004] for this matrix.
    matrix = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]], dtype=dtype)
    h11, h22, h12 = 18 / 56 + 1e-4, 38 / 56 + 1e-4, 22 / 56
    weights = torch.tensor([0.5 + 0.5 * h12 / h11, 0.5 + 0.5 * h12 / h22], dtype=dtype)
    aggregator = UPGrad(projector=QuadprogProjector())
    torch.testing.assert_close(aggregator(matrix), weights @ matrix)
    torch.testing.assert_close(
        aggregator(matrix), torch.tensor([0.2929, 1.9004, 1.9004], dtype=dtype), atol=1e-4, rtol=0
    )


@pytest.mark.parametrize("m", [3, 4, 6, 20])
def test_upgrad_with_the_quadprog_projector_matches_the_regularized_brute_force(m: int):
    generator = torch.Generator().manual_seed(m)
    matrix = torch.randn(m, 8, generator=generator, dtype=torch.float64)
    gramian = matrix @ matrix.T
    regularized = gramian / gramian.trace() + 1e-4 * torch.eye(m, dtype=torch.float64)
    if m <= 6:
        expected = reference_weights(regularized, torch.full((m,), 1.0 / m, dtype=torch.float64))
    else:
        # Brute force is 2^m solves: check the KKT conditions of the regularized problem instead.
        expected = None
    weights = UPGradWeighting(projector=QuadprogProjector())(gramian)
    if expected is not None:
        torch.testing.assert_close(weights, expected, rtol=1e-7, atol=1e-9)
    else:
        projections = QuadprogProjector()(torch.eye(m, dtype=torch.float64) / m, gramian)
        torch.testing.assert_close(weights, projections.sum(dim=0))
        _, negative, complementarity = kkt_violations(
            regularized, torch.eye(m, dtype=torch.float64) / m, projections
        )
        assert negative <= 1e-9 and complementarity <= 1e-9


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
    # Exactly covariant: the default projector does not depend on the scale of the Gramian.
    aggregator = UPGrad()
    for matrix in random_matrices(dtype)[1:6]:
        rtol = 1e-3 if dtype == torch.float32 else 1e-6
        expected = factor * aggregator(matrix)
        torch.testing.assert_close(
            aggregator(factor * matrix),
            expected,
            rtol=rtol,
            # A(J) is exact up to the rounding of J^T w, relative to the scale of J (not of A(J),
            # which is near 0 for conflicting singular matrices).
            atol=rtol * factor * float(matrix.abs().max()),
        )


def test_upgrad_handles_duplicated_and_opposite_rows():
    row = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    other = torch.tensor([0.3, 1.0, 1.0], dtype=torch.float64)
    matrix = torch.stack([row, row, -row, other])
    assert_never_conflicts(matrix, UPGrad()(matrix))


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


def test_upgrad_uses_the_given_projector_with_the_published_call_convention():
    calls = []

    class Recording(DualConeProjector):
        def __call__(self, U: Tensor, G: Tensor) -> Tensor:
            calls.append((tuple(U.shape), tuple(G.shape)))
            return ActiveSetDualConeProjector()(U, G)

    matrix = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    torch.testing.assert_close(UPGrad(projector=Recording())(matrix), UPGrad()(matrix))
    assert calls == [((2, 2), (2, 2))]


def test_upgrad_signature_is_the_published_one():
    for cls in (UPGrad, UPGradWeighting):
        parameters = inspect.signature(cls).parameters
        assert list(parameters) == ["pref_vector", "projector"]
        assert all(parameter.default is None for parameter in parameters.values())


def test_upgrad_hyper_parameters_are_settable_and_take_effect_on_the_next_call():
    matrix = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]], dtype=torch.float64)
    aggregator = UPGrad()
    exact = aggregator(matrix)
    aggregator.projector = QuadprogProjector()
    assert isinstance(aggregator.gramian_weighting.projector, QuadprogProjector)
    regularized = aggregator(matrix)
    assert float((regularized - exact).abs().max()) > 1e-4
    torch.testing.assert_close(regularized, UPGrad(projector=QuadprogProjector())(matrix))
    aggregator.projector = None
    assert isinstance(aggregator.projector, ActiveSetDualConeProjector)
    torch.testing.assert_close(aggregator(matrix), exact)
    aggregator.pref_vector = torch.tensor([1.0, 0.0], dtype=torch.float64)
    assert torch.equal(aggregator.gramian_weighting.pref_vector, aggregator.pref_vector)
    torch.testing.assert_close(
        aggregator(matrix), UPGrad(pref_vector=torch.tensor([1.0, 0.0]))(matrix)
    )
    weighting = UPGradWeighting()
    weighting.pref_vector = torch.tensor([2.0, 1.0])
    torch.testing.assert_close(weighting(torch.eye(2)), torch.tensor([2.0, 1.0]))
    with pytest.raises(TypeError, match="projector"):
        aggregator.projector = "quadprog"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="pref_vector"):
        aggregator.pref_vector = torch.ones(2, 2)


def test_upgrad_repr_str_and_hyper_parameters():
    aggregator = UPGrad(pref_vector=torch.tensor([1.0, 2.0]), projector=QuadprogProjector())
    assert str(aggregator) == "UPGrad"
    assert repr(aggregator) == (
        "UPGrad(pref_vector=tensor([1., 2.]), "
        "projector=QuadprogProjector(norm_eps=0.0001, reg_eps=0.0001))"
    )
    assert torch.equal(aggregator.pref_vector, torch.tensor([1.0, 2.0]))
    assert "weighting.gramian_weighting._pref_vector" in aggregator.state_dict()
    assert repr(UPGrad()) == (
        "UPGrad(pref_vector=None, projector=ActiveSetDualConeProjector(tolerance=None))"
    )


@pytest.mark.parametrize(
    ["kwargs", "error", "name"],
    [
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
    with pytest.raises(TypeError):
        UPGrad(norm_eps=1e-4)  # type: ignore[call-arg]


def test_upgrad_rejects_a_pref_vector_of_the_wrong_length():
    with pytest.raises(ValueError, match="pref_vector"):
        UPGrad(pref_vector=torch.ones(3))(torch.ones(2, 4))


@pytest.mark.parametrize("m", [1, 2, 3, 5, 8, 16, 20])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_upgrad_gives_a_non_finite_result_on_non_finite_input(m: int, bad: float):
    matrix = torch.randn(m, 6, generator=torch.Generator().manual_seed(m))
    matrix[0, 0] = bad
    for aggregator in [UPGrad(), UPGrad(projector=QuadprogProjector())]:
        assert not bool(torch.isfinite(aggregator(matrix)).all())
        assert not bool(torch.isfinite(aggregator.gramian_weighting(matrix @ matrix.T)).all())


@pytest.mark.parametrize("m", [2, 3, 5, 8, 16, 20])
@pytest.mark.parametrize(["dtype", "factor"], [(torch.float32, 1e19), (torch.float64, 1e155)])
def test_upgrad_gives_a_non_finite_result_when_the_gramian_overflows(
    m: int, dtype: torch.dtype, factor: float
):
    matrix = torch.randn(m, 50, generator=torch.Generator().manual_seed(m), dtype=dtype) * factor
    assert bool(torch.isfinite(matrix).all())
    for aggregator in [UPGrad(), UPGrad(projector=QuadprogProjector())]:
        assert not bool(torch.isfinite(aggregator(matrix)).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("m", [2, 3, 7, 20])
def test_upgrad_works_in_half_precision(m: int, dtype: torch.dtype):
    matrix = torch.randn(m, 30, generator=torch.Generator().manual_seed(m)).to(dtype)
    result = UPGrad()(matrix)
    assert result.dtype == dtype and bool(torch.isfinite(result).all())
    expected = UPGrad()(matrix.float())
    torch.testing.assert_close(result.float(), expected, rtol=2e-2, atol=2e-2)


def test_upgrad_rejects_integer_input():
    with pytest.raises(TypeError, match="matrix"):
        UPGrad()(torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="gramian"):
        UPGradWeighting()(torch.eye(2, dtype=torch.int64))
