import pytest
import torch
from torch import Tensor

from torchjd.aggregation import (
    Aggregator,
    GramianWeightedAggregator,
    MeanWeighting,
    UPGradWeighting,
    WeightedAggregator,
    Weighting,
)
from torchjd.linalg import PSDMatrix


class _ColumnMax(Aggregator):
    """A 0.18-style custom aggregator: it implements ``forward``."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, matrix: Tensor, /) -> Tensor:
        self.calls += 1
        return matrix.max(dim=0).values


class _InverseDiagonal(Weighting[PSDMatrix]):
    def forward(self, gramian: PSDMatrix, /) -> Tensor:
        return 1.0 / gramian.diagonal()


def test_custom_aggregator_implements_forward():
    matrix = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    assert torch.equal(_ColumnMax()(matrix), torch.tensor([1.0, 3.0]))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_non_floating_matrix_raises_type_error_naming_it(dtype):
    with pytest.raises(TypeError, match="`matrix`.*floating-point"):
        _ColumnMax()(torch.ones(2, 3, dtype=dtype))


@pytest.mark.parametrize("shape", [(3,), (2, 3, 4), ()])
def test_non_matrix_raises(shape):
    with pytest.raises(ValueError, match="`matrix`"):
        _ColumnMax()(torch.ones(shape))


def test_no_rows_gives_zeros_without_calling_forward():
    aggregator = _ColumnMax()
    assert torch.equal(aggregator(torch.zeros(0, 4)), torch.zeros(4))
    assert aggregator.calls == 0


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_matrix_gives_nan_without_calling_forward(value):
    aggregator = _ColumnMax()
    matrix = torch.ones(3, 4)
    matrix[1, 2] = value
    result = aggregator(matrix)
    assert result.shape == (4,) and torch.isnan(result).all()
    assert aggregator.calls == 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32_and_returned_in_its_dtype(dtype):
    seen = []

    class Recording(Aggregator):
        def forward(self, matrix: Tensor, /) -> Tensor:
            seen.append(matrix.dtype)
            return matrix.sum(dim=0)

    matrix = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=dtype)
    result = Recording()(matrix)
    assert seen == [torch.float32] and result.dtype == dtype
    assert torch.equal(result, torch.tensor([4.0, 6.0], dtype=dtype))


def test_weighted_aggregator_combines_the_rows_with_its_weighting():
    matrix = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    aggregator = WeightedAggregator(_InverseDiagonalOfMatrix())
    # Weights 1 / (row norm²): 1/5 and 1/45.
    expected = matrix[0] / 5 + matrix[1] / 45
    torch.testing.assert_close(aggregator(matrix), expected)


class _InverseDiagonalOfMatrix(Weighting):
    def forward(self, matrix: Tensor, /) -> Tensor:
        return 1.0 / matrix.square().sum(dim=1)


def test_weighted_aggregator_rejects_a_non_weighting():
    with pytest.raises(TypeError, match="`weighting`"):
        WeightedAggregator(lambda matrix: matrix)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`gramian_weighting`"):
        GramianWeightedAggregator(torch.ones(2))  # type: ignore[arg-type]


def test_gramian_weighted_aggregator_feeds_the_gramian():
    matrix = torch.tensor([[1.0, 2.0], [3.0, 6.0]], dtype=torch.float64)
    inner = _InverseDiagonal()
    aggregator = GramianWeightedAggregator(gramian_weighting=inner)
    assert aggregator.gramian_weighting is inner
    gramian = matrix @ matrix.T
    # `.weighting` takes the matrix (published meaning), `.gramian_weighting` the Gramian.
    torch.testing.assert_close(aggregator.weighting(matrix), 1.0 / gramian.diagonal())
    torch.testing.assert_close(aggregator.gramian_weighting(gramian), 1.0 / gramian.diagonal())
    torch.testing.assert_close(aggregator(matrix), (1.0 / gramian.diagonal()) @ matrix)


def test_gramian_weighted_aggregator_propagates_overflowing_gramians():
    # Finite entries whose Gramian overflows float32: the result must not be finite garbage.
    matrix = torch.tensor([[1e20, 1.0], [-1e20, 2.0]])
    assert not torch.isfinite(GramianWeightedAggregator(UPGradWeighting())(matrix)).all()


def test_mean_weighting_reads_only_the_number_of_rows():
    assert torch.equal(MeanWeighting()(torch.empty(4, 0)), torch.full((4,), 0.25))
