"""
Random weighting (RW): a fresh random convex combination of the rows at every call.

From `Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task Learning
<https://arxiv.org/abs/2111.10603>`_ (Lin et al., TMLR 2022). The weights are

``w = softmax(z)`` with ``z ~ N(0, I_m)``,

drawn from torch's global generator on the input's device, so ``torch.manual_seed`` makes them
reproducible. They are positive and sum to one.
"""

import torch
from torch import Tensor

from ._aggregator_bases import WeightedAggregator
from ._weighting_bases import ShapeOnlyWeighting


class RandomWeighting(ShapeOnlyWeighting):
    """
    Gives the ``m`` rows the weights ``softmax(z)``, with ``z`` drawn from a standard normal.

    It takes the Gramian ``[m, m]`` (only its size, device and dtype are used), so it can be fed by
    :mod:`torchjd.autogram`.

    >>> import torch
    >>> from torchjd.aggregation import RandomWeighting
    >>> _ = torch.manual_seed(0)
    >>> weights = RandomWeighting()(torch.eye(3))
    >>> weights.shape, float(weights.sum())
    (torch.Size([3]), 1.0)
    """

    def forward(self, stat: Tensor, /) -> Tensor:
        logits = torch.randn(stat.shape[0], dtype=stat.dtype, device=stat.device)
        return torch.softmax(logits, dim=0)


class Random(WeightedAggregator):
    """
    Aggregates the rows with a random convex combination, ``softmax(z) @ J``, ``z ~ N(0, I_m)``.

    See :class:`RandomWeighting` for the weights. The randomness comes from torch's global
    generator.

    >>> import torch
    >>> from torchjd.aggregation import Random
    >>> _ = torch.manual_seed(0)
    >>> A = Random()
    >>> A
    Random()
    >>> result = A(torch.tensor([[1., 1.], [1., 1.]]))
    >>> torch.allclose(result, torch.tensor([1., 1.]))
    True
    """

    def __init__(self):
        super().__init__(RandomWeighting())
