"""
DB-MTL (dual-balancing multi-task learning), gradient-magnitude balancing: keeps a moving
average of each objective's gradient, rescales every average to the largest norm among them and
sums them.

.. math::

    \\hat g_{i,t} = β_t\\, \\hat g_{i,t-1} + (1 - β_t)\\, g_{i,t}, \\quad β_t = β\\, t^{-σ}, \\qquad
    d_t = \\sum_i \\frac{\\max_j \\|\\hat g_{j,t}\\|}{\\|\\hat g_{i,t}\\|}\\, \\hat g_{i,t}

with ``σ`` the parameter ``beta_sigma`` and ``t`` the call count (from 1). The averages start at
zero and are kept in the buffer ``averaged_jacobian`` ``[m, n]``, the count in ``step``. An average
of norm zero contributes nothing. A call whose result is non-finite (the norms overflowed) leaves
the state unchanged.

DB-MTL balances the loss scales too, by differentiating the logarithms of the losses: that part
is the user's, who passes the Jacobian of ``log(losses)`` (e.g.
``jac(torch.log(losses), params)``); this aggregator does the gradient-magnitude part.

Paper: `Dual-Balancing for Multi-Task Learning <https://arxiv.org/abs/2308.12029>`_ (Lin et al.,
2023).
"""

import torch
from torch import Tensor

from torchjd._stateful import Stateful

from ._aggregator_bases import Aggregator
from ._stateful_utils import LazyStateMixin, check_real


class DBMTL(LazyStateMixin, Aggregator, Stateful):
    """
    Aggregator that sums moving averages of the gradients (of the log-losses), each rescaled to
    the largest of their norms (DB-MTL).

    :param beta: The base rate ``β ∈ [0, 1)`` of the moving average of the gradients.
    :param beta_sigma: The decay exponent ``σ ≥ 0`` of the rate, ``β_t = β t^{-σ}``.

    >>> import torch
    >>> from torchjd.aggregation import DBMTL
    >>> aggregator = DBMTL(beta=0.5, beta_sigma=0.0)
    >>> aggregator(torch.tensor([[4.0, 0.0], [0.0, 1.0]]))
    tensor([2., 2.])
    """

    averaged_jacobian: Tensor
    step: Tensor

    def __init__(self, beta: float = 0.9, beta_sigma: float = 0.5):
        super().__init__()
        self.beta = check_real("beta", beta, 0.0, 1.0, high_inclusive=False)
        self.beta_sigma = check_real("beta_sigma", beta_sigma, 0.0, None)
        self.register_buffer("averaged_jacobian", torch.zeros(0))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def reset(self) -> None:
        """Sets the moving averages back to zero and the call count to 0."""
        self._empty_buffers("averaged_jacobian")
        self.step = torch.zeros((), dtype=torch.long, device=self.step.device)

    @torch.no_grad()
    def forward(self, matrix: Tensor, /) -> Tensor:
        if self.averaged_jacobian.numel() == 0:
            averaged = torch.zeros_like(matrix)
        elif self.averaged_jacobian.shape != matrix.shape:
            raise ValueError(
                f"The state of this DBMTL was built for a matrix of shape "
                f"{tuple(self.averaged_jacobian.shape)}, but the input has shape "
                f"{tuple(matrix.shape)}. Call `reset()` before changing it."
            )
        else:
            averaged = self.averaged_jacobian.to(dtype=matrix.dtype, device=matrix.device)

        step = self.step + 1
        rate = self.beta / float(step) ** self.beta_sigma
        averaged = rate * averaged + (1.0 - rate) * matrix
        norms = averaged.norm(dim=1)
        tiny = torch.finfo(norms.dtype).tiny
        scales = torch.where(norms > 0, norms.max() / norms.clamp(min=tiny), 0.0)
        result = scales @ averaged
        if not bool(torch.isfinite(result).all()):
            # The norms or the rescaled sum overflowed: the step is skipped, the state kept.
            return result

        self.averaged_jacobian = averaged
        self.step = step
        return result

    def extra_repr(self) -> str:
        return f"beta={self.beta!r}, beta_sigma={self.beta_sigma!r}"
