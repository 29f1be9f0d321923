"""
Random loss weighting (RLW): a fresh random convex combination of the values at every call.

From `Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task Learning
<https://arxiv.org/abs/2111.10603>`_ (Lin et al., TMLR 2022). At every step the losses are weighted
by ``w = softmax(z)``, ``z ~ N(0, I_m)`` (the paper's default sampling distribution), so the
scalar is ``sum_i w_i L_i``. The weights are positive, sum to one and are not differentiated
through. They are drawn from torch's global generator on the losses' device, so
``torch.manual_seed`` makes them reproducible. This is the loss-level twin of
:class:`torchjd.aggregation.Random`.
"""

import torch
from torch import Tensor

from ._scalarizer_bases import Scalarizer


class Random(Scalarizer):
    """
    Returns ``sum(softmax(z) * values)`` with ``z`` drawn from a standard normal at every call (one
    draw per value, from torch's global generator).

    >>> import torch
    >>> from torchjd.scalarization import Random
    >>> _ = torch.manual_seed(0)
    >>> value = Random()(torch.tensor([2.0, 2.0, 2.0]))
    >>> torch.allclose(value, torch.tensor(2.0))
    True
    """

    def forward(self, values: Tensor, /) -> Tensor:
        # The weights are drawn and normalized in float32 at least, so that they sum to 1 in half
        # precision too.
        dtype = torch.promote_types(values.dtype, torch.float32)
        logits = torch.randn(values.numel(), dtype=dtype, device=values.device)
        weights = torch.softmax(logits, dim=0).reshape(values.shape)
        return (weights * values).sum().to(values.dtype)
