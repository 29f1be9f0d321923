"""
Trimmed mean: the coordinate-wise mean of the rows without the extreme values.

From `Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates
<https://arxiv.org/abs/1803.01498>`_ (Yin et al., ICML 2018). For every coordinate ``k``, the values
``g_1k, ..., g_mk`` are sorted, the ``trim_number`` largest and the ``trim_number`` smallest are
removed, and the aggregation is the mean of the ``m - 2 trim_number`` that remain (the paper's
``β``-trimmed mean with ``trim_number = β m``).
"""

import torch
from torch import Tensor

from ._aggregator_bases import Aggregator
from ._checks import Hyperparameter, int_at_least


class TrimmedMean(Aggregator):
    """
    Aggregates the rows by their coordinate-wise mean after removing, in each coordinate, the
    ``trim_number`` largest and the ``trim_number`` smallest values.

    Needs ``m > 2 trim_number`` rows. Differentiable with respect to the kept values.

    :param trim_number: How many values to remove at each end of every coordinate.

    >>> import torch
    >>> from torchjd.aggregation import TrimmedMean
    >>> A = TrimmedMean(trim_number=1)
    >>> A
    TrimmedMean(trim_number=1)
    >>> A(torch.tensor([[1., 100.], [2., 3.], [3., 2.], [-50., 1.]]))
    tensor([1.5000, 2.5000])
    """

    trim_number = Hyperparameter(int_at_least(0))

    def __init__(self, trim_number: int):
        super().__init__()
        self.trim_number = trim_number

    def extra_repr(self) -> str:
        return f"trim_number={self.trim_number}"

    def forward(self, matrix: Tensor, /) -> Tensor:
        m = matrix.shape[0]
        if m <= 2 * self.trim_number:
            raise ValueError(
                f"Parameter `trim_number` should be less than half the number of rows ({m}). Found "
                f"`{self.trim_number}`."
            )
        sorted_matrix, _ = torch.sort(matrix, dim=0)
        return sorted_matrix[self.trim_number : m - self.trim_number].mean(dim=0)
