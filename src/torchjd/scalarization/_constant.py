"""
Constant: a weighted sum of the losses with fixed, user-given weights, ``sum_i w_i L_i``.

The hand-tuned loss weighting of most multi-task models. The weights are a registered buffer, so
they follow the module's ``.to(...)`` and are saved in its ``state_dict``.
"""

from torch import Tensor

from ._scalarizer_bases import (
    Scalarizer,
    _check_matches_losses,
    _check_vector,
    _format_tensor,
)


class Constant(Scalarizer):
    """
    Returns ``weights @ losses``: the losses ``[m]`` weighted by fixed weights ``[m]``.

    :param weights: The weight of each loss, a non-empty, finite, floating point vector ``[m]``.
        The losses it is called on must have the same length. The weights are cast to the losses'
        dtype and device.

    >>> import torch
    >>> from torchjd.scalarization import Constant
    >>> scalarizer = Constant(torch.tensor([1.0, 0.5]))
    >>> scalarizer(torch.tensor([2.0, 4.0]))
    tensor(4.)
    """

    weights: Tensor

    def __init__(self, weights: Tensor):
        super().__init__()
        _check_vector(weights, "weights")
        self.register_buffer("weights", weights.detach().clone())

    def extra_repr(self) -> str:
        return f"weights={_format_tensor(self.weights)}"

    def scalarize(self, losses: Tensor) -> Tensor:
        _check_matches_losses(self.weights, losses, "weights")
        return self.weights.to(dtype=losses.dtype, device=losses.device) @ losses
