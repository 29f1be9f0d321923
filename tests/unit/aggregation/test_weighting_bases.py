import pytest
import torch
from torch import Tensor

from torchjd.aggregation import MeanWeighting, UPGradWeighting, Weighting


class _RowSums(Weighting):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, stat: Tensor, /) -> Tensor:
        self.calls += 1
        return stat.sum(dim=1)


def test_custom_weighting_implements_forward():
    assert torch.equal(_RowSums()(torch.tensor([[1.0, 2.0], [3.0, 4.0]])), torch.tensor([3.0, 7.0]))


def test_weighting_is_generic_like_the_published_one():
    from torchjd.linalg import PSDMatrix

    class Typed(Weighting[PSDMatrix]):
        def forward(self, gramian: PSDMatrix, /) -> Tensor:
            return gramian.diagonal()

    assert torch.equal(Typed()(torch.eye(2)), torch.ones(2))


def test_integer_statistic_raises_type_error():
    with pytest.raises(TypeError, match="`stat`.*floating-point"):
        _RowSums()(torch.ones(2, 2, dtype=torch.int64))


def test_gramian_weighting_names_the_gramian_and_refuses_a_non_square_matrix():
    with pytest.raises(ValueError, match="`gramian`.*square.*J @ J.T"):
        UPGradWeighting()(torch.randn(3, 4))
    with pytest.raises(TypeError, match="`gramian`"):
        UPGradWeighting()(torch.ones(2, 2, dtype=torch.int32))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_statistic_gives_nan_weights_without_calling_forward(value):
    weighting = _RowSums()
    stat = torch.ones(3, 3)
    stat[0, 1] = value
    weights = weighting(stat)
    assert weights.shape == (3,) and torch.isnan(weights).all() and weighting.calls == 0


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_upgrad_weighting_on_a_non_finite_gramian_is_not_uniform(value):
    gramian = torch.eye(3)
    gramian[0, 0] = value
    assert torch.isnan(UPGradWeighting()(gramian)).all()


def test_shape_only_weighting_ignores_non_finite_values():
    # Its weights do not depend on the values, and the product with the matrix carries the NaN.
    stat = torch.full((2, 3), float("nan"))
    assert torch.equal(MeanWeighting()(stat), torch.full((2,), 0.5))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_statistic_is_computed_in_float32(dtype):
    seen = []

    class Recording(Weighting):
        def forward(self, stat: Tensor, /) -> Tensor:
            seen.append(stat.dtype)
            return stat.diagonal()

    weights = Recording()(torch.eye(2, dtype=dtype))
    assert seen == [torch.float32] and weights.dtype == dtype


def test_no_rows_gives_an_empty_tensor():
    weighting = _RowSums()
    assert weighting(torch.zeros(0, 0)).shape == (0,) and weighting.calls == 0
