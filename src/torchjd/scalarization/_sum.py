"""
Sum: the plain sum of the losses, ``sum_i L_i``.

The baseline of multi-task learning (often called linear scalarization, or equal weighting). Its
gradient is the sum of the gradients of the losses, which is what
:class:`torchjd.aggregation.Sum` computes from the Jacobian.
"""

from torch import Tensor

from ._scalarizer_bases import Scalarizer


class Sum(Scalarizer):
    """
    Returns the sum ``sum_i L_i`` of the values (any shape).

    >>> import torch
    >>> from torchjd.scalarization import Sum
    >>> Sum()(torch.tensor([1.0, 2.0, 3.0]))
    tensor(6.)
    """

    def forward(self, values: Tensor, /) -> Tensor:
        return values.sum()
