"""
Constant: a weighted sum of the losses with fixed, user-given weights, ``sum_i w_i L_i``.

The hand-tuned loss weighting of most multi-task models.
"""

from torch import Tensor

from ._scalarizer_bases import Scalarizer, _check_same_shape, _check_tensor, _format_tensor, _like


class Constant(Scalarizer):
    """
    Returns ``sum(weights * values)``: the values weighted by fixed weights of the same shape.

    :param weights: The weight of each value, a non-empty, finite, floating point tensor of the
        shape of the values it will be called on. Cast to the values' dtype and device at each call.
        It is a settable attribute.

    >>> import torch
    >>> from torchjd.scalarization import Constant
    >>> scalarizer = Constant(torch.tensor([1.0, 0.5]))
    >>> scalarizer(torch.tensor([2.0, 4.0]))
    tensor(4.)
    """

    def __init__(self, weights: Tensor) -> None:
        super().__init__()
        self.weights = weights

    @property
    def weights(self) -> Tensor:
        return self._weights

    @weights.setter
    def weights(self, value: Tensor) -> None:
        self._weights = _check_tensor(value, "weights")

    def extra_repr(self) -> str:
        return f"weights={_format_tensor(self.weights)}"

    def forward(self, values: Tensor, /) -> Tensor:
        _check_same_shape(self.weights, values, "weights")
        return (_like(self.weights, values) * values).sum()
