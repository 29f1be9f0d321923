import torch

from torchjd.aggregation import GramianWeightedAggregator, Mean, MeanWeighting


def test_mean_is_the_average_of_the_rows():
    matrix = torch.randn(5, 7, dtype=torch.float64)
    torch.testing.assert_close(Mean()(matrix), sum(matrix) / 5)


def test_mean_weighting_depends_only_on_the_number_of_rows():
    gramian = torch.randn(4, 4, dtype=torch.float64)
    torch.testing.assert_close(
        MeanWeighting()(gramian), torch.full((4,), 0.25, dtype=torch.float64)
    )
    assert not isinstance(Mean(), GramianWeightedAggregator)  # no Gramian needed


def test_mean_weighted_form_matches_the_shortcut():
    matrix = torch.randn(3, 6)
    torch.testing.assert_close(Mean().weights(matrix) @ matrix, Mean()(matrix))


def test_mean_repr_and_str():
    assert repr(Mean()) == "Mean()" and str(Mean()) == "Mean"
