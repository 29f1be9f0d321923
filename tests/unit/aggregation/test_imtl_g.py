import torch
from pytest import mark

from torchjd.aggregation import IMTLG, IMTLGWeighting


def _imtl_g_from_the_paper(matrix: torch.Tensor) -> torch.Tensor:
    """The paper's closed form: α_{2:m} = g_1 U^T (D U^T)^{-1}, α_1 = 1 - Σ α_{2:m}."""
    units = matrix / matrix.norm(dim=1, keepdim=True)
    differences = matrix[:1] - matrix[1:]  # D, rows g_1 - g_i
    unit_differences = units[:1] - units[1:]  # U, rows u_1 - u_i
    tail = matrix[0] @ unit_differences.T @ torch.linalg.inv(differences @ unit_differences.T)
    weights = torch.cat([1 - tail.sum(dim=0, keepdim=True), tail])
    return weights @ matrix


@mark.parametrize("seed", range(4))
@mark.parametrize("m", [2, 3, 5])
def test_imtl_g_gives_equal_projections_on_unit_rows(seed: int, m: int):
    torch.manual_seed(seed)
    matrix = torch.randn(m, 8, dtype=torch.float64)
    result = IMTLG()(matrix)
    projections = (matrix / matrix.norm(dim=1, keepdim=True)) @ result
    assert torch.allclose(projections, projections[0].expand(m))
    assert torch.allclose(result, _imtl_g_from_the_paper(matrix))


def test_imtl_g_weights_sum_to_one():
    torch.manual_seed(0)
    matrix = torch.randn(4, 6, dtype=torch.float64)
    weights = IMTLGWeighting()(matrix @ matrix.T)
    assert torch.isclose(weights.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_imtl_g_hand_computed_values():
    # Orthogonal rows: α ∝ 1 / ||g_i||, so the result has equal coordinates on both unit rows.
    assert torch.allclose(
        IMTLG()(torch.tensor([[2.0, 0.0], [0.0, 1.0]])), torch.tensor([2 / 3, 2 / 3])
    )
    # Equal rows get equal weights.
    assert torch.allclose(IMTLG()(torch.tensor([[1.0, 2.0], [1.0, 2.0]])), torch.tensor([1.0, 2.0]))


def test_imtl_g_is_scale_and_permutation_equivariant():
    torch.manual_seed(1)
    matrix = torch.randn(3, 5, dtype=torch.float64)
    result = IMTLG()(matrix)
    assert torch.allclose(IMTLG()(4.0 * matrix), 4.0 * result)
    assert torch.allclose(IMTLG()(matrix[[1, 2, 0]]), result)
    # Rescaling rows keeps the unit rows, hence the direction; only the length changes.
    scaled_rows = matrix * torch.tensor([[1.0], [10.0], [0.1]], dtype=torch.float64)
    scaled_result = IMTLG()(scaled_rows)
    cosine = scaled_result @ result / (scaled_result.norm() * result.norm())
    assert torch.isclose(cosine, torch.tensor(1.0, dtype=torch.float64))


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_imtl_g_single_row_zero_matrix_and_dtype(dtype: torch.dtype):
    row = torch.tensor([[3.0, -4.0]], dtype=dtype)
    result = IMTLG()(row)
    assert result.dtype == dtype
    assert torch.allclose(result, row[0])
    assert torch.equal(IMTLG()(torch.zeros(3, 2, dtype=dtype)), torch.zeros(2, dtype=dtype))


def test_imtl_g_float32_is_close_to_float64():
    torch.manual_seed(2)
    matrix = torch.randn(4, 10, dtype=torch.float64)
    assert torch.allclose(IMTLG()(matrix.float()).double(), IMTLG()(matrix), atol=1e-4)


def test_imtl_g_is_differentiable():
    matrix = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: IMTLG()(x), (matrix,))


def test_imtl_g_repr_and_str():
    assert repr(IMTLG()) == "IMTLG()"
    assert str(IMTLG()) == "IMTLG"
    assert repr(IMTLGWeighting()) == "IMTLGWeighting()"
    assert str(IMTLGWeighting()) == "IMTLGWeighting"


def test_imtl_g_opposite_rows_give_zero():
    # No combination with weights summing to one has equal projections on g and -g but zero.
    matrix = torch.tensor([[1.0, 2.0], [-1.0, -2.0]], dtype=torch.float64)
    assert torch.allclose(IMTLG()(matrix), torch.zeros(2, dtype=torch.float64))


@mark.parametrize("dtype", [torch.float32, torch.float64])
@mark.parametrize("factor", [1.0, 2.5, 1e3])
def test_imtl_g_on_antiparallel_rows_is_exactly_zero(factor: float, dtype: torch.dtype):
    # d · u = d · (-u) forces d ⟂ g, and d is in the span of g: d = 0, with weights summing to one.
    g = torch.randn(7, generator=torch.Generator().manual_seed(0), dtype=dtype)
    matrix = torch.stack([g, -factor * g])
    result = IMTLG()(matrix)
    assert result.norm() <= 16 * torch.finfo(dtype).eps * factor * g.norm()
    weights = IMTLGWeighting()(matrix @ matrix.T)
    expected = torch.tensor([factor, 1.0], dtype=dtype) / (1 + factor)
    assert torch.allclose(weights, expected, rtol=1e-4)


def test_imtl_g_keeps_equal_projections_with_an_antiparallel_pair():
    g, h = torch.randn(2, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    matrix = torch.stack([g, -g, h])
    result = IMTLG()(matrix)
    projections = (matrix / matrix.norm(dim=1, keepdim=True)) @ result
    assert torch.allclose(projections, projections[0].expand(3), atol=1e-12)
    assert torch.isclose(IMTLGWeighting()(matrix @ matrix.T).sum(), torch.tensor(1.0).double())
