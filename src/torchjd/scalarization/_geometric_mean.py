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
    Returns the geometric mean ``(prod_i L_i)^(1/m) = exp(mean_i log L_i)`` of positive losses.

    Raises a ``ValueError`` when a loss is not positive, since the logarithm is then undefined.

    >>> import torch
    >>> from torchjd.scalarization import GeometricMean
    >>> GeometricMean()(torch.tensor([1.0, 4.0, 16.0]))
    tensor(4.)
    """

    def scalarize(self, losses: Tensor) -> Tensor:
        if not bool((losses.detach() > 0).all()):
            raise ValueError(
                "Parameter `losses` should only contain positive values for `GeometricMean`. "
                f"Found {losses.detach()}."
            )
        return torch.exp(torch.log(losses).mean())
