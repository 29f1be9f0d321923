"""
Mean: the average of the losses, ``(1/m) sum_i L_i``.

Equal weighting with weights summing to one: the same direction as :class:`Sum`, ``m`` times
shorter, so the learning rate does not depend on the number of objectives.
"""

from torch import Tensor

from ._scalarizer_bases import Scalarizer


class Mean(Scalarizer):
    """
    Returns the mean ``(1/m) sum_i L_i`` of the values (any shape).

    >>> import torch
    >>> from torchjd.scalarization import Mean
    >>> Mean()(torch.tensor([1.0, 2.0, 6.0]))
    tensor(3.)
    """

    def forward(self, values: Tensor, /) -> Tensor:
        return values.mean()
