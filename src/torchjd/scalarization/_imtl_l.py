"""
IMTL-L: the loss balancing half of impartial multi-task learning.

From `Towards Impartial Multi-task Learning <https://openreview.net/forum?id=IMPnRXEWpvr>`_ (Liu et
al., ICLR 2021). Each task's loss is scaled by a learnable factor ``e^{s_i}`` and regularized by
``-s_i``:

``sum_i (e^{s_i} L_i - s_i)``.

The model parameters see the scaled losses ``e^{s_i} L_i``, while minimizing over ``s_i`` gives
``e^{s_i} L_i = 1``: at the optimum every scaled loss equals one, so no task dominates by the mere
scale of its loss. The scale parameters are updated by gradient descent together with the model,
as in the paper. (IMTL-G, the gradient balancing half, is :class:`torchjd.aggregation.IMTLG`.)
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from torchjd._stateful import Stateful

from ._scalarizer_bases import Scalarizer, _check_same_shape, _check_shape_argument, _like


class IMTLL(Scalarizer, Stateful):
    """
    Returns ``sum_i (exp(s_i) L_i - s_i)`` with learnable log-scales ``s``.

    The log-scales are the parameter ``log_scale``, of the shape of the values, initialized at
    ``0`` (unit scales). Give them to an optimizer, for instance together with the model's
    parameters: one ``backward()`` of the scalar fills the gradients of both. :meth:`reset` puts
    them back to ``0``.

    :param shape: The shape of the values it will be called on (one log-scale per value); an int
        ``m`` means ``(m,)``.

    >>> import torch
    >>> from torchjd.scalarization import IMTLL
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Linear(3, 2)
    >>> imtl_l = IMTLL(2)
    >>> optimizer = torch.optim.SGD([*model.parameters(), *imtl_l.parameters()], lr=0.1)
    >>> output = model(torch.randn(8, 3))
    >>> losses = torch.stack([output[:, 0].pow(2).mean(), output[:, 1].abs().mean()])
    >>> imtl_l(losses).backward()
    >>> optimizer.step()
    >>> imtl_l.log_scale.grad.shape
    torch.Size([2])
    """

    def __init__(self, shape: int | Sequence[int]) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(_check_shape_argument(shape)))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.log_scale.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"

    def reset(self) -> None:
        with torch.no_grad():
            self.log_scale.zero_()

    def forward(self, values: Tensor, /) -> Tensor:
        _check_same_shape(self.log_scale, values, "log_scale")
        log_scale = _like(self.log_scale, values)
        return (torch.exp(log_scale) * values - log_scale).sum()
