"""
Sum: the sum of the rows, ``A(J) = Σ_i J_i``.

Summing the objectives and differentiating gives this update. The weights depend only on the
number of rows ``m``.
"""

import torch
from torch import Tensor

from ._aggregator_bases import WeightedAggregator
from ._weighting_bases import ShapeOnlyWeighting


class SumWeighting(ShapeOnlyWeighting):
    """
    Gives every one of the ``m`` rows the weight ``1``.

    It takes the matrix ``[m, n]`` or its Gramian ``[m, m]``: only the number of rows, the dtype and
    the device are used, so :mod:`torchjd.autogram` can feed it.

    >>> import torch
    >>> from torchjd.aggregation import SumWeighting
    >>> SumWeighting()(torch.eye(3))
    tensor([1., 1., 1.])
    """

    def forward(self, stat: Tensor, /) -> Tensor:
        return torch.ones(stat.shape[0], dtype=stat.dtype, device=stat.device)


class Sum(WeightedAggregator):
    """
    Aggregates the rows into their sum, ``A(J) = Σ_i J_i``.

    >>> import torch
    >>> from torchjd.aggregation import Sum
    >>> A = Sum()
    >>> A
    Sum()
    >>> A(torch.tensor([[-4., 1., 1.], [6., 1., 1.]]))
    tensor([2., 2., 2.])
    """

    def __init__(self):
        super().__init__(SumWeighting())

    def forward(self, matrix: Tensor, /) -> Tensor:
        # Same result as the weighted form, without computing the Gramian it does not need.
        return matrix.sum(dim=0)
