"""
Mean: the average of the rows, ``A(J) = (1/m) Σ_i J_i``.

Averaging the objectives and differentiating gives this update; it is the baseline that Jacobian
descent generalizes. The weights depend only on the number of rows ``m``.
"""

import torch
from torch import Tensor

from ._aggregator_bases import WeightedAggregator
from ._weighting_bases import ShapeOnlyWeighting


class MeanWeighting(ShapeOnlyWeighting):
    """
    Gives every one of the ``m`` rows the weight ``1 / m``.

    It takes the matrix ``[m, n]`` or its Gramian ``[m, m]``: only the number of rows, the dtype and
    the device are used, so :mod:`torchjd.autogram` can feed it.

    >>> import torch
    >>> from torchjd.aggregation import MeanWeighting
    >>> MeanWeighting()(torch.eye(4))
    tensor([0.2500, 0.2500, 0.2500, 0.2500])
    """

    def forward(self, stat: Tensor, /) -> Tensor:
        m = stat.shape[0]
        return torch.full((m,), 1.0 / m, dtype=stat.dtype, device=stat.device)


class Mean(WeightedAggregator):
    """
    Aggregates the rows into their average, ``A(J) = (1/m) Σ_i J_i``.

    >>> import torch
    >>> from torchjd.aggregation import Mean
    >>> A = Mean()
    >>> A
    Mean()
    >>> A(torch.tensor([[-4., 1., 1.], [6., 1., 1.]]))
    tensor([1., 1., 1.])
    """

    def __init__(self):
        super().__init__(MeanWeighting())

    def forward(self, matrix: Tensor, /) -> Tensor:
        # Same result as the weighted form, without computing the Gramian it does not need.
        return matrix.mean(dim=0)
