"""
Geometric mean of the losses, ``(prod_i L_i)^(1/m)``.

The geometric loss strategy (GLS) of `MultiNet++: Multi-Stream Feature Aggregation and Geometric
Loss Strategy for Multi-Task Learning <https://arxiv.org/abs/1904.08492>`_ (Chennupati et al.,
CVPR Workshops 2019). Its gradient is ``(G / m) sum_i grad L_i / L_i`` with ``G`` the geometric
mean: each loss is weighted by the inverse of its value, so the objective is invariant to a
rescaling of any one loss (only its log matters) and small losses are not drowned by large ones.
It is computed as ``exp(mean(log L))`` for numerical stability.
"""

import torch
from torch import Tensor

from ._scalarizer_bases import Scalarizer


class GeometricMean(Scalarizer):
    """
    Returns the geometric mean ``(prod_i L_i)^(1/m) = exp(mean_i log L_i)`` of non-negative values.

    A zero value gives ``0`` (where the gradient is not finite, as that of ``L^(1/m)`` at 0); a
    negative value raises a ``ValueError``, since the logarithm is then undefined.

    >>> import torch
    >>> from torchjd.scalarization import GeometricMean
    >>> GeometricMean()(torch.tensor([1.0, 4.0, 16.0]))
    tensor(4.)
    """

    def forward(self, values: Tensor, /) -> Tensor:
        if bool((values.detach() < 0).any()):
            raise ValueError(
                "Parameter `values` should only contain non-negative values for `GeometricMean`. "
                f"Found {values.detach()}."
            )
        return torch.exp(torch.log(values).mean())
