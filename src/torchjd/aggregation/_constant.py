"""
Constant: a fixed linear combination of the rows, ``A(J) = Σ_i c_i J_i``, with user weights ``c``.

The weights do not depend on the matrix, only their number must match its number of rows.
"""

import torch
from torch import Tensor

from ._aggregator_bases import WeightedAggregator
from ._checks import Delegated, Hyperparameter
from ._weighting_bases import ShapeOnlyWeighting


def _check_weights(name: str, weights: Tensor) -> Tensor:
    if not isinstance(weights, Tensor):
        raise TypeError(
            f"Parameter `weights` should be a Tensor. Found `{type(weights).__name__}`."
        )
    if weights.dim() != 1:
        raise ValueError(
            f"Parameter `weights` should be a vector (1 dimension). Found shape {tuple(weights.shape)}."
        )
    if not (weights.is_floating_point() and bool(torch.isfinite(weights).all())):
        raise ValueError(
            f"Parameter `weights` should hold finite floating-point values. Found {weights}."
        )
    return weights.detach().clone()


class ConstantWeighting(ShapeOnlyWeighting):
    """
    Gives the rows the fixed weights ``c`` (a copy of ``weights``; assigning ``weights`` replaces
    them).

    It takes the matrix ``[m, n]`` or its Gramian ``[m, m]``; only ``m`` is used, and it must equal
    the number of weights. The weights are returned in the dtype and on the device of the input.

    :param weights: The weights ``[m]``, one per row.

    >>> import torch
    >>> from torchjd.aggregation import ConstantWeighting
    >>> ConstantWeighting(torch.tensor([1., 2.]))(torch.eye(2))
    tensor([1., 2.])
    """

    weights = Hyperparameter(_check_weights)

    def __init__(self, weights: Tensor):
        super().__init__()
        self.weights = weights

    def extra_repr(self) -> str:
        return f"weights={self.weights!r}"

    def forward(self, stat: Tensor, /) -> Tensor:
        if stat.shape[0] != self.weights.shape[0]:
            raise ValueError(
                f"ConstantWeighting has {self.weights.shape[0]} weights but the input has "
                f"{stat.shape[0]} rows."
            )
        return self.weights.to(dtype=stat.dtype, device=stat.device)


class Constant(WeightedAggregator):
    """
    Aggregates the rows into the fixed combination ``A(J) = Σ_i c_i J_i``.

    :param weights: The weights ``c`` ``[m]``, one per row.

    >>> import torch
    >>> from torchjd.aggregation import Constant
    >>> A = Constant(torch.tensor([1., 2.]))
    >>> A
    Constant(weights=tensor([1., 2.]))
    >>> A(torch.tensor([[-4., 1., 1.], [6., 1., 1.]]))
    tensor([8., 3., 3.])
    """

    weights = Delegated("weighting")

    def __init__(self, weights: Tensor):
        super().__init__(ConstantWeighting(weights))

    def extra_repr(self) -> str:
        return self.weighting.extra_repr()

    def forward(self, matrix: Tensor, /) -> Tensor:
        # No Gramian needed: the weights do not depend on the matrix.
        return self.weighting(matrix) @ matrix
