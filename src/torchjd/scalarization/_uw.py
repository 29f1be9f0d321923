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

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from torchjd._stateful import Stateful

from ._scalarizer_bases import Scalarizer, _check_same_shape, _check_shape_argument, _like


class UW(Scalarizer, Stateful):
    """
    Returns ``sum_i (exp(-s_i) L_i + s_i) / 2`` with learnable log-variances ``s = log σ²``.

    The log-variances are the parameter ``log_var``, of the shape of the values, initialized at
    ``0`` (``σ_i = 1``). Give them to an optimizer, for instance together with the model's
    parameters: one ``backward()`` of the scalar fills the gradients of both. :meth:`reset` puts
    them back to ``0``.

    :param shape: The shape of the values it will be called on (one log-variance per value); an
        int ``m`` means ``(m,)``.

    >>> import torch
    >>> from torchjd.scalarization import UW
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Linear(3, 2)
    >>> uw = UW(2)
    >>> optimizer = torch.optim.SGD([*model.parameters(), *uw.parameters()], lr=0.1)
    >>> output = model(torch.randn(8, 3))
    >>> losses = torch.stack([output[:, 0].pow(2).mean(), output[:, 1].abs().mean()])
    >>> uw(losses).backward()
    >>> optimizer.step()
    >>> uw.log_var.grad.shape
    torch.Size([2])
    """

    def __init__(self, shape: int | Sequence[int]) -> None:
        super().__init__()
        self.log_var = nn.Parameter(torch.zeros(_check_shape_argument(shape)))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.log_var.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"

    def reset(self) -> None:
        with torch.no_grad():
            self.log_var.zero_()

    def forward(self, values: Tensor, /) -> Tensor:
        _check_same_shape(self.log_var, values, "log_var")
        log_var = _like(self.log_var, values)
        return 0.5 * (torch.exp(-log_var) * values + log_var).sum()
