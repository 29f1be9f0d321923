import torch
from pytest import mark, raises

from torchjd.aggregation import TrimmedMean


def _trimmed_mean_by_loop(matrix: torch.Tensor, trim_number: int) -> torch.Tensor:
    m, n = matrix.shape
    result = torch.zeros(n, dtype=matrix.dtype)
    for k in range(n):
        values = sorted(float(x) for x in matrix[:, k])
        kept = values[trim_number : m - trim_number]
        result[k] = sum(kept) / len(kept)
    return result


@mark.parametrize("seed", range(3))
@mark.parametrize(["m", "trim_number"], [(1, 0), (3, 1), (5, 2), (8, 3), (6, 0)])
def test_trimmed_mean_matches_the_plain_loop(seed: int, m: int, trim_number: int):
    torch.manual_seed(seed)
    matrix = torch.randn(m, 7, dtype=torch.float64)
    result = TrimmedMean(trim_number=trim_number)(matrix)
    assert torch.allclose(result, _trimmed_mean_by_loop(matrix, trim_number))


def test_trimmed_mean_without_trimming_is_the_mean():
    matrix = torch.randn(4, 3)
    assert torch.allclose(TrimmedMean(trim_number=0)(matrix), matrix.mean(dim=0))


def test_trimmed_mean_removes_outliers_and_is_equivariant():
    torch.manual_seed(0)
    matrix = torch.ones(7, 3, dtype=torch.float64)
    matrix[0] = 1e6
    matrix[3, 1] = -1e6
    aggregator = TrimmedMean(trim_number=1)
    assert torch.equal(aggregator(matrix), torch.ones(3, dtype=torch.float64))
    other = torch.randn(7, 3, dtype=torch.float64)
    result = aggregator(other)
    assert torch.allclose(aggregator(other[torch.randperm(7)]), result)
    assert torch.allclose(aggregator(-2.0 * other + 1.0), -2.0 * result + 1.0)


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_trimmed_mean_zero_matrix_single_row_and_dtype(dtype: torch.dtype):
    result = TrimmedMean(trim_number=1)(torch.zeros(3, 2, dtype=dtype))
    assert result.dtype == dtype
    assert torch.equal(result, torch.zeros(2, dtype=dtype))
    row = torch.tensor([[1.0, -2.0]], dtype=dtype)
    assert torch.equal(TrimmedMean(trim_number=0)(row), row[0])


def test_trimmed_mean_gradient_flows_to_kept_values():
    matrix = torch.tensor([[1.0], [5.0], [3.0]], requires_grad=True)
    TrimmedMean(trim_number=1)(matrix).sum().backward()
    assert torch.equal(matrix.grad, torch.tensor([[0.0], [0.0], [1.0]]))


def test_trimmed_mean_needs_enough_rows():
    with raises(ValueError, match="trim_number"):
        TrimmedMean(trim_number=1)(torch.ones(2, 3))
    with raises(ValueError, match="trim_number"):
        TrimmedMean(trim_number=1)(torch.ones(1, 3))


def test_trimmed_mean_repr_and_str():
    assert repr(TrimmedMean(trim_number=2)) == "TrimmedMean(trim_number=2)"
    assert str(TrimmedMean(trim_number=2)) == "TrimmedMean"


def test_trimmed_mean_rejects_invalid_parameters():
    with raises(ValueError, match="trim_number"):
        TrimmedMean(trim_number=-1)
    with raises(TypeError, match="trim_number"):
        TrimmedMean(trim_number=1.0)
