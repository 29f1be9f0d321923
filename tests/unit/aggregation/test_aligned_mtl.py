import torch
from pytest import mark, raises

from torchjd.aggregation import AlignedMTL, AlignedMTLWeighting


def _balance_matrix(matrix: torch.Tensor, scale_mode: str = "min") -> torch.Tensor:
    """B such that the weights are B @ w: recovered column by column from one-hot preferences."""
    m = matrix.shape[0]
    gramian = matrix @ matrix.T
    columns = [
        AlignedMTLWeighting(pref_vector=torch.eye(m, dtype=matrix.dtype)[i], scale_mode=scale_mode)(
            gramian
        )
        for i in range(m)
    ]
    return torch.stack(columns, dim=1)


@mark.parametrize("seed", range(4))
@mark.parametrize("shape", [(2, 5), (4, 6), (5, 3)])
@mark.parametrize("scale_mode", ["min", "median", "rmse"])
def test_aligned_rows_have_equal_singular_values(
    seed: int, shape: tuple[int, int], scale_mode: str
):
    torch.manual_seed(seed)
    matrix = torch.randn(*shape, dtype=torch.float64)
    aligned = _balance_matrix(matrix, scale_mode) @ matrix
    rank = min(shape)
    singular_values = torch.linalg.svdvals(aligned)
    eigenvalues = torch.linalg.svdvals(matrix)[:rank] ** 2
    expected = {
        "min": eigenvalues.min(),
        "median": eigenvalues.sort().values[(rank - 1) // 2],
        "rmse": eigenvalues.mean(),
    }[scale_mode].sqrt()
    assert torch.allclose(singular_values[:rank], expected.expand(rank))
    assert torch.all(singular_values[rank:] < 1e-10)


def test_aligned_mtl_aggregation_is_the_sum_of_aligned_rows():
    torch.manual_seed(0)
    matrix = torch.randn(3, 5, dtype=torch.float64)
    aligned = _balance_matrix(matrix) @ matrix
    # The default preferences are 1/m each, as in torchjd 0.18.
    assert torch.allclose(AlignedMTL()(matrix), aligned.mean(dim=0))
    preferences = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    assert torch.allclose(AlignedMTL(pref_vector=preferences)(matrix), preferences @ aligned)


def test_aligned_mtl_rank_deficient_matrix():
    torch.manual_seed(1)
    matrix = torch.randn(2, 4, dtype=torch.float64)
    matrix = torch.cat([matrix, matrix[:1] + matrix[1:]])  # rank 2, m = 3
    singular_values = torch.linalg.svdvals(_balance_matrix(matrix) @ matrix)
    assert torch.allclose(singular_values[0], singular_values[1])
    assert singular_values[2] < 1e-8


def test_aligned_mtl_hand_computed_values():
    gramian = torch.tensor([[4.0, 0.0], [0.0, 1.0]])
    # B = σ diag(1/2, 1) with the default preferences 1/2 each.
    assert torch.allclose(AlignedMTLWeighting()(gramian), torch.tensor([0.25, 0.5]))
    assert torch.allclose(
        AlignedMTLWeighting(scale_mode="median")(gramian), torch.tensor([0.25, 0.5])
    )
    rmse = 2.5**0.5
    assert torch.allclose(
        AlignedMTLWeighting(scale_mode="rmse")(gramian), torch.tensor([rmse / 4, rmse / 2])
    )
    # Orthonormal rows are already aligned: the weights are the preferences.
    preferences = torch.tensor([1.0, 2.0, 3.0])
    assert torch.allclose(AlignedMTLWeighting(pref_vector=preferences)(torch.eye(3)), preferences)


def test_aligned_mtl_is_scale_and_permutation_equivariant():
    torch.manual_seed(2)
    matrix = torch.randn(4, 6, dtype=torch.float64)
    result = AlignedMTL()(matrix)
    assert torch.allclose(AlignedMTL()(7.0 * matrix), 7.0 * result)
    assert torch.allclose(AlignedMTL()(matrix[[2, 3, 0, 1]]), result)


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_aligned_mtl_single_row_zero_matrix_and_dtype(dtype: torch.dtype):
    row = torch.tensor([[3.0, -4.0]], dtype=dtype)
    result = AlignedMTL()(row)
    assert result.dtype == dtype
    assert torch.allclose(result, row[0])
    assert torch.equal(AlignedMTL()(torch.zeros(3, 2, dtype=dtype)), torch.zeros(2, dtype=dtype))


def test_aligned_mtl_float32_is_close_to_float64():
    torch.manual_seed(3)
    matrix = torch.randn(4, 10, dtype=torch.float64)
    assert torch.allclose(AlignedMTL()(matrix.float()).double(), AlignedMTL()(matrix), atol=1e-4)


def test_aligned_mtl_repr_and_str():
    assert repr(AlignedMTL()) == "AlignedMTL(pref_vector=None, scale_mode='min')"
    assert (
        repr(AlignedMTLWeighting(pref_vector=torch.tensor([1.0, 2.0]), scale_mode="rmse"))
        == "AlignedMTLWeighting(pref_vector=[1.0, 2.0], scale_mode='rmse')"
    )
    assert str(AlignedMTL(scale_mode="median")) == "AlignedMTL"
    assert str(AlignedMTLWeighting()) == "AlignedMTLWeighting"


def test_aligned_mtl_rejects_invalid_parameters():
    with raises(ValueError, match="scale_mode"):
        AlignedMTL(scale_mode="max")
    with raises(TypeError, match="pref_vector"):
        AlignedMTL(pref_vector=[1.0, 2.0])
    with raises(ValueError, match="pref_vector"):
        AlignedMTL(pref_vector=torch.ones(2, 2))
    with raises(ValueError, match="pref_vector"):
        AlignedMTL(pref_vector=torch.ones(3))(torch.ones(2, 4))
