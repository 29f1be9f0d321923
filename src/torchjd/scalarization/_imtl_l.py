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

import torch
from torch import Tensor, nn

from ._scalarizer_bases import Scalarizer, _check_num_losses, _check_positive_int


class IMTLL(Scalarizer):
    """
    Returns ``sum_i (exp(s_i) L_i - s_i)`` with learnable log-scales ``s``.

    The log-scales are the parameter ``log_scales`` ``[num_tasks]``, initialized at ``0`` (unit
    scales). Give them to an optimizer, for instance together with the model's parameters: one
    ``backward()`` of the scalar fills the gradients of both.

    :param num_tasks: The number of losses ``m`` that the scalarizer will be called on.

    >>> import torch
    >>> from torchjd.scalarization import IMTLL
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Linear(3, 2)
    >>> imtl_l = IMTLL(num_tasks=2)
    >>> optimizer = torch.optim.SGD([*model.parameters(), *imtl_l.parameters()], lr=0.1)
    >>> output = model(torch.randn(8, 3))
    >>> losses = torch.stack([output[:, 0].pow(2).mean(), output[:, 1].abs().mean()])
    >>> imtl_l(losses).backward()
    >>> optimizer.step()
    >>> imtl_l.log_scales.grad.shape
    torch.Size([2])
    """

    def __init__(self, num_tasks: int):
        super().__init__()
        _check_positive_int(num_tasks, "num_tasks")
        self.num_tasks = num_tasks
        self.log_scales = nn.Parameter(torch.zeros(num_tasks))

    def extra_repr(self) -> str:
        return f"num_tasks={self.num_tasks}"

    def scalarize(self, losses: Tensor) -> Tensor:
        _check_num_losses(losses, self.num_tasks, "task")
        log_scales = self.log_scales.to(dtype=losses.dtype, device=losses.device)
        return (torch.exp(log_scales) * losses - log_scales).sum()
