"""
GradNorm: learns one weight per objective so that the norms of the weighted gradients follow the
relative training rates of the objectives.

With ``w_i`` the weights, ``g_i`` the rows of the matrix, ``L_i`` the current losses and
``L_i(0)`` the first recorded ones:

.. math::

    G_i = w_i \\|g_i\\|, \\quad \\bar G = \\frac 1 m \\sum_i G_i, \\quad
    r_i = \\frac{L_i / L_i(0)}{\\frac 1 m \\sum_j L_j / L_j(0)}, \\qquad
    L_{\\text{grad}} = \\sum_i \\left| G_i - \\bar G\\, r_i^{α} \\right|

The aggregation is ``Σ_i w_i g_i`` with the current weights; then the weights take one gradient
step of size ``lr`` on ``L_grad`` (the targets ``Ḡ r_i^α`` held constant, as in the paper),
``w_i ← w_i - lr · sign(G_i - Ḡ r_i^α) ‖g_i‖``, are clipped at 0 and renormalized to sum to
``m``. The paper takes ``g_i`` with respect to the last shared layer; here they are the rows the
aggregator receives.

**Loss values.** GradNorm needs the losses, which a Jacobian does not carry: call
:meth:`GradNorm.set_losses` with the ``[m]`` loss values before each aggregation. The first
values recorded are ``L_i(0)``. The weights are updated in closed form, so they are a buffer
(``loss_weights``), not an ``nn.Parameter``: no optimizer needs to know about them. Buffers:
``loss_weights`` ``[m]`` (starting at 1) and ``initial_losses`` ``[m]``.

**Non-finite steps.** A step with non-finite losses, matrix or gradient norms (e.g. an overflowing
``torch.amp`` step) returns NaN and changes no state: non-finite losses are never recorded as the
initial ones, and the weights are not updated.

Paper: `GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep Multitask Networks
<https://arxiv.org/abs/1711.02257>`_ (Chen et al., ICML 2018).
"""

import torch
from torch import Tensor

from torchjd._stateful import Stateful

from ._aggregator_bases import Aggregator
from ._stateful_utils import LazyStateMixin, check_real, check_state_size


class GradNorm(LazyStateMixin, Aggregator, Stateful):
    """
    Aggregator ``Σ_i w_i g_i`` whose weights are learned so that the weighted gradient norms match
    the objectives' relative training rates (GradNorm). Call :meth:`set_losses` before each call.

    :param alpha: The asymmetry ``α ≥ 0``: how strongly the objectives that train slower are
        pushed (the paper uses 1.5 on NYUv2; 0 equalizes the gradient norms).
    :param lr: The learning rate ``> 0`` of the weights (the paper uses the network's).

    >>> import torch
    >>> from torchjd.aggregation import GradNorm
    >>> aggregator = GradNorm(alpha=1.5, lr=0.1)
    >>> aggregator.set_losses(torch.tensor([1.0, 1.0]))
    >>> aggregator(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
    tensor([1., 3.])
    >>> aggregator.loss_weights
    tensor([1.2222, 0.7778])
    """

    loss_weights: Tensor
    initial_losses: Tensor

    def __init__(self, alpha: float = 1.5, lr: float = 0.025):
        super().__init__()
        self.alpha = check_real("alpha", alpha, 0.0, None)
        self.lr = check_real("lr", lr, 0.0, None, low_inclusive=False)
        self.register_buffer("loss_weights", torch.zeros(0))
        self.register_buffer("initial_losses", torch.zeros(0))
        self._losses: Tensor | None = None

    def set_losses(self, losses: Tensor) -> None:
        """
        Records the loss values ``[m]`` of the step about to be aggregated; the first ones
        recorded (since construction or :meth:`reset`) are the initial losses ``L_i(0)``.

        :param losses: The ``m`` loss values, one per row of the next matrix.
        """
        if not isinstance(losses, Tensor):
            raise TypeError(f"Parameter `losses` should be a Tensor. Found `{type(losses).__name__}`.")
        if losses.dim() != 1:
            raise ValueError(
                f"Parameter `losses` should be a vector (1 dimension). Found shape "
                f"{tuple(losses.shape)}."
            )
        check_state_size(self.initial_losses, losses.shape[0], "GradNorm")
        losses = losses.detach()
        # Non-finite losses (an overflowing mixed-precision step) are never the initial ones.
        if self.initial_losses.numel() == 0 and bool(torch.isfinite(losses).all()):
            self.initial_losses = losses.clone()
        self._losses = losses

    def reset(self) -> None:
        """Sets the weights back to 1 and forgets the initial and pending losses."""
        self._empty_buffers("loss_weights", "initial_losses")
        self._losses = None

    def forward(self, matrix: Tensor, /) -> Tensor:
        m = matrix.shape[0]
        losses = self._losses
        if losses is None:
            raise RuntimeError(
                "GradNorm needs the loss values: call `set_losses(losses)` before each aggregation."
            )
        if losses.shape[0] != m:
            raise ValueError(
                f"The losses given to `set_losses` have {losses.shape[0]} values, but the matrix "
                f"has {m} rows."
            )
        check_state_size(self.loss_weights, m, "GradNorm")
        if self.loss_weights.numel() == 0:
            weights = torch.ones(m, dtype=matrix.dtype, device=matrix.device)
        else:
            weights = self.loss_weights.to(dtype=matrix.dtype, device=matrix.device)
        if self.initial_losses.numel() == 0 or not bool(torch.isfinite(losses).all()):
            # A skipped step (non-finite losses): NaN, and the weights are left as they were.
            self._losses = None
            return torch.full_like(matrix[0], float("nan"))
        result = weights @ matrix

        with torch.no_grad():
            losses = losses.to(dtype=matrix.dtype, device=matrix.device)
            initial = self.initial_losses.to(dtype=matrix.dtype, device=matrix.device)
            tiny = torch.finfo(matrix.dtype).tiny
            # An objective whose initial loss is 0 counts as training at the average rate.
            rates = torch.where(initial != 0, losses / torch.where(initial != 0, initial, tiny), 1.0)
            mean_rate = rates.mean()
            relative_rates = torch.where(mean_rate > 0, rates / mean_rate.clamp(min=tiny), 1.0)
            norms = matrix.detach().norm(dim=1)
            weighted_norms = weights * norms
            targets = weighted_norms.mean() * relative_rates.clamp(min=0.0) ** self.alpha
            new_weights = (weights - self.lr * torch.sign(weighted_norms - targets) * norms).clamp(
                min=0.0
            )
            self._losses = None
            if not bool(torch.isfinite(new_weights).all()):
                # The norms overflowed: the step is skipped and the weights are left as they were.
                return torch.full_like(result, float("nan"))
            total = new_weights.sum()
            if total > 0:
                new_weights = m * new_weights / total
            else:
                new_weights = torch.ones_like(new_weights)
            self.loss_weights = new_weights
        return result

    def extra_repr(self) -> str:
        return f"alpha={self.alpha!r}, lr={self.lr!r}"
