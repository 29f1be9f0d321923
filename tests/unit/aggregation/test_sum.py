import torch

from torchjd.aggregation import GramianWeightedAggregator, Sum, SumWeighting


def test_sum_is_the_sum_of_the_rows():
    matrix = torch.randn(5, 7, dtype=torch.float64)
    torch.testing.assert_close(
        Sum()(matrix), matrix[0] + matrix[1] + matrix[2] + matrix[3] + matrix[4]
    )


def test_sum_weighting_depends_only_on_the_number_of_rows():
    torch.testing.assert_close(SumWeighting()(torch.zeros(3, 3)), torch.ones(3))
    assert not isinstance(Sum(), GramianWeightedAggregator)  # no Gramian needed


def test_sum_weighted_form_matches_the_shortcut():
    matrix = torch.randn(3, 6)
    torch.testing.assert_close(Sum().weights(matrix) @ matrix, Sum()(matrix))


def test_sum_repr_and_str():
    assert repr(Sum()) == "Sum()" and str(Sum()) == "Sum"
