from pytest import raises
import pytest
import torch

from torchjd.aggregation import Constant, ConstantWeighting, WeightedAggregator


def test_constant_is_the_fixed_combination_of_the_rows():
    matrix = torch.randn(3, 5, dtype=torch.float64)
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(
        Constant(weights)(matrix), matrix[0] - 2 * matrix[1] + 0.5 * matrix[2]
    )


def test_constant_weighting_accepts_a_gramian_and_follows_its_dtype():
    weights = ConstantWeighting(torch.tensor([1.0, 2.0]))(torch.eye(2, dtype=torch.float64))
    assert weights.dtype == torch.float64
    torch.testing.assert_close(weights, torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert isinstance(Constant(torch.ones(2)), WeightedAggregator)


def test_constant_copies_its_weights_and_takes_new_ones_on_assignment():
    weights = torch.tensor([1.0, 2.0])
    aggregator = Constant(weights)
    weights[0] = 100.0
    torch.testing.assert_close(aggregator(torch.eye(2)), torch.tensor([1.0, 2.0]))
    aggregator.weights = torch.tensor([3.0, -1.0])
    torch.testing.assert_close(aggregator(torch.eye(2)), torch.tensor([3.0, -1.0]))
    with raises(ValueError, match="`weights`"):
        aggregator.weights = torch.ones(2, 2)


def test_constant_rejects_a_matrix_with_another_number_of_rows():
    with pytest.raises(ValueError, match="2 weights"):
        Constant(torch.ones(2))(torch.ones(3, 4))


@pytest.mark.parametrize(
    ["weights", "error"],
    [
        ([1.0, 2.0], TypeError),
        (torch.ones(2, 2), ValueError),
        (torch.tensor([1.0, float("nan")]), ValueError),
        (torch.tensor([1, 2]), ValueError),
    ],
)
def test_constant_rejects_invalid_weights(weights, error: type[Exception]):
    with pytest.raises(error, match="weights"):
        Constant(weights)


def test_constant_repr_and_str():
    aggregator = Constant(torch.tensor([1.0, 2.0]))
    assert (
        repr(aggregator) == "Constant(weights=tensor([1., 2.]))" and str(aggregator) == "Constant"
    )
