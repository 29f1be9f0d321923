import torch
from pytest import mark

from torchjd.aggregation import Random, RandomWeighting


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_random_weights_are_a_seeded_softmax_of_normal_draws(dtype: torch.dtype):
    gramian = torch.eye(4, dtype=dtype)
    torch.manual_seed(3)
    weights = RandomWeighting()(gramian)
    torch.manual_seed(3)
    expected = torch.softmax(torch.randn(4, dtype=dtype), dim=0)
    assert weights.dtype == dtype
    assert torch.equal(weights, expected)
    assert torch.all(weights > 0)
    assert torch.isclose(weights.sum(), torch.tensor(1.0, dtype=dtype))


def test_random_aggregation_is_the_weighted_sum_of_rows():
    matrix = torch.tensor([[1.0, 2.0, 0.0], [-3.0, 0.5, 1.0]], dtype=torch.float64)
    torch.manual_seed(7)
    result = Random()(matrix)
    torch.manual_seed(7)
    weights = torch.softmax(torch.randn(2, dtype=torch.float64), dim=0)
    assert torch.allclose(result, weights @ matrix)


def test_random_is_reproducible_and_varies_between_calls():
    matrix = torch.randn(5, 3)
    aggregator = Random()
    torch.manual_seed(0)
    first, second = aggregator(matrix), aggregator(matrix)
    torch.manual_seed(0)
    assert torch.equal(aggregator(matrix), first)
    assert not torch.equal(first, second)


def test_random_single_row_and_zero_matrix():
    assert torch.equal(Random()(torch.tensor([[2.0, -1.0]])), torch.tensor([2.0, -1.0]))
    assert torch.equal(Random()(torch.zeros(3, 4)), torch.zeros(4))
    assert torch.equal(Random()(torch.zeros(0, 4)), torch.zeros(4))


def test_random_repr_and_str():
    assert repr(Random()) == "Random()"
    assert str(Random()) == "Random"
    assert repr(RandomWeighting()) == "RandomWeighting()"
    assert str(RandomWeighting()) == "RandomWeighting"
