"""
UW: uncertainty weighting, with one learnable homoscedastic variance per task.

From `Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry and Semantics
<https://arxiv.org/abs/1705.07115>`_ (Kendall, Gal and Cipolla, CVPR 2018). Each task ``i`` gets a
noise scale ``σ_i``, learned jointly with the model by maximizing the Gaussian likelihood, which
gives the objective (the paper's equation 7)

``sum_i L_i / (2 σ_i²) + log σ_i``.

A task with a large loss gets a large variance and so a small weight, and the ``log σ_i`` term
keeps the variances from growing without bound. For fixed losses the optimum is ``σ_i² = L_i``.
As the paper recommends for stability, the learned quantity is the log-variance ``s_i = log σ_i²``,
which makes the objective ``sum_i (exp(-s_i) L_i + s_i) / 2``, defined for every real ``s_i``.

The paper's classification variant (``L_i / σ_i²`` instead of ``L_i / (2σ_i²)``) is the same
objective with every ``L_i`` doubled; this class always uses the regression form above.
"""

import torch
from torch import Tensor, nn

from ._scalarizer_bases import Scalarizer, _check_num_losses, _check_positive_int


class UW(Scalarizer):
    """
    Returns ``sum_i (exp(-s_i) L_i + s_i) / 2`` with learnable log-variances ``s = log σ²``.

    The log-variances are the parameter ``log_vars`` ``[num_tasks]``, initialized at ``0``
    (``σ_i = 1``). Give them to an optimizer, for instance together with the model's parameters:
    one ``backward()`` of the scalar fills the gradients of both.

    :param num_tasks: The number of losses ``m`` that the scalarizer will be called on.

    >>> import torch
    >>> from torchjd.scalarization import UW
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Linear(3, 2)
    >>> uw = UW(num_tasks=2)
    >>> optimizer = torch.optim.SGD([*model.parameters(), *uw.parameters()], lr=0.1)
    >>> output = model(torch.randn(8, 3))
    >>> losses = torch.stack([output[:, 0].pow(2).mean(), output[:, 1].abs().mean()])
    >>> uw(losses).backward()
    >>> optimizer.step()
    >>> uw.log_vars.grad.shape
    torch.Size([2])
    """

    def __init__(self, num_tasks: int):
        super().__init__()
        _check_positive_int(num_tasks, "num_tasks")
        self.num_tasks = num_tasks
        self.log_vars = nn.Parameter(torch.zeros(num_tasks))

    def extra_repr(self) -> str:
        return f"num_tasks={self.num_tasks}"

    def scalarize(self, losses: Tensor) -> Tensor:
        _check_num_losses(losses, self.num_tasks, "task")
        log_vars = self.log_vars.to(dtype=losses.dtype, device=losses.device)
        return 0.5 * (torch.exp(-log_vars) * losses + log_vars).sum()
