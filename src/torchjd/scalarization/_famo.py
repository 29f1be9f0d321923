"""
FAMO: fast adaptive multitask optimization, balancing the rates at which the losses go down.

From `FAMO: Fast Adaptive Multitask Optimization <https://arxiv.org/abs/2306.03792>`_ (Liu, Feng,
Stone and Liu, NeurIPS 2023). FAMO looks for the update that decreases every task's log-loss at
the same rate, without ever computing per-task gradients. It keeps task logits ``ξ`` and weights
``z = softmax(ξ)``. The model is trained on

``c sum_i z_i log(ℓ_i - ℓ*_i + ε)``, ``c = (sum_i z_i / (ℓ_i - ℓ*_i + ε))^{-1}`` (a constant),

whose gradient ``c sum_i z_i ∇ℓ_i / (ℓ_i - ℓ*_i + ε)`` is a convex combination of the task
gradients, each divided by its loss (``ℓ*`` is a lower bound on the losses, ``ε`` a small constant
for stability). After the model step, the losses ``ℓ'`` recomputed on the same batch measure how
much each task improved, ``δ_i = log(ℓ_i - ℓ*_i + ε) - log(ℓ'_i - ℓ*_i + ε)``, and the logits move
along ``-(J_z^T δ + γ ξ)``, with ``J_z = diag(z) - z z^T`` the Jacobian of the softmax: tasks
that improved less than the weighted average gain weight, and ``γ`` decays the logits towards
uniform weights.

As in the paper's practical algorithm (its Algorithm 2) that step is an Adam step with learning
rate ``lr`` and (L2) weight decay ``γ`` (``weight_decay``), with Adam's default ``betas=(0.9, 0.999)`` and
``eps=1e-8``. It is implemented here with the Adam moments in buffers, so the whole FAMO state
round-trips through ``state_dict``.
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from torchjd._stateful import Stateful

from ._scalarizer_bases import (
    Scalarizer,
    _check_non_negative_float,
    _check_positive_float,
    _check_same_shape,
    _check_shape_argument,
    _check_tensor,
    _check_values,
    _format_tensor,
)

_ADAM_BETA1 = 0.9
_ADAM_BETA2 = 0.999
_ADAM_EPS = 1e-8


class FAMO(Scalarizer, Stateful):
    """
    Returns ``c sum_i z_i log(ℓ_i - ℓ*_i + ε)``; :meth:`update` then adapts the weights ``z``.

    The task logits ``ξ`` are the parameter ``logits``, of the shape of the values (initialized at
    ``0``, uniform weights). They are learned by FAMO itself, in :meth:`update`, not by
    backpropagation: the scalar is built with ``z`` detached, so the logits never get a ``.grad``
    and do not need to be (but may harmlessly be) given to your optimizer. The values of the last
    call in training mode, the Adam moments of the logits and the step count are buffers, so
    :meth:`reset` and ``state_dict`` cover them.

    One training step: compute the losses, ``famo(losses).backward()``, step the model's
    optimizer, recompute the losses on the same batch without gradients and pass them to
    :meth:`update`.

    :param shape: The shape of the values it will be called on (one task per element); an int
        ``m`` means ``(m,)``.
    :param min_losses: The lower bounds ``ℓ*`` of the values, of that shape. ``None`` (default)
        means zeros, the bound of non-negative losses. The values must stay above ``ℓ* - ε``.
    :param lr: The learning rate ``β > 0`` of the logits' Adam step. The paper uses ``0.025``.
    :param weight_decay: The weight decay ``γ >= 0`` of the logits. The paper uses ``0.001``.
    :param epsilon: The constant ``ε >= 0`` added inside the logarithms (``1e-8``, fixed in
        torchjd 0.18).

    ``min_losses``, ``lr``, ``weight_decay`` and ``epsilon`` are settable attributes, validated on
    assignment.

    >>> import torch
    >>> from torchjd.scalarization import FAMO
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Linear(3, 2)
    >>> famo = FAMO(2)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> inputs, targets = torch.randn(8, 3), torch.randn(8, 2)
    >>> def compute_losses():
    ...     return ((model(inputs) - targets) ** 2).mean(dim=0)  # one loss per task, [2]
    >>> for _ in range(3):
    ...     optimizer.zero_grad()
    ...     famo(compute_losses()).backward()
    ...     optimizer.step()
    ...     with torch.no_grad():
    ...         famo.update(compute_losses())
    >>> weights = torch.softmax(famo.logits, dim=0)  # the task weights z, adapted 3 times
    >>> famo.step
    tensor(3)
    """

    previous_losses: Tensor
    has_previous_losses: Tensor
    step: Tensor
    exp_avg: Tensor
    exp_avg_sq: Tensor

    def __init__(
        self,
        shape: int | Sequence[int],
        min_losses: Tensor | None = None,
        lr: float = 0.025,
        weight_decay: float = 0.001,
        *,
        epsilon: float = 1e-8,
    ) -> None:
        super().__init__()
        dims = _check_shape_argument(shape)
        self.logits = nn.Parameter(torch.zeros(dims), requires_grad=False)
        self.min_losses = min_losses
        self.lr = lr
        self.weight_decay = weight_decay
        self.epsilon = epsilon
        self.register_buffer("previous_losses", torch.zeros(dims))
        self.register_buffer("has_previous_losses", torch.zeros((), dtype=torch.bool))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("exp_avg", torch.zeros(dims))
        self.register_buffer("exp_avg_sq", torch.zeros(dims))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.logits.shape)

    @property
    def min_losses(self) -> Tensor | None:
        return self._min_losses

    @min_losses.setter
    def min_losses(self, value: Tensor | None) -> None:
        if value is not None:
            value = _check_tensor(value, "min_losses")
            if tuple(value.shape) != self.shape:
                raise ValueError(
                    f"Parameter `min_losses` should have the shape {self.shape} (`shape`). Found "
                    f"shape {tuple(value.shape)}."
                )
        self._min_losses = value

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _check_positive_float(value, "lr")

    @property
    def weight_decay(self) -> float:
        return self._weight_decay

    @weight_decay.setter
    def weight_decay(self, value: float) -> None:
        self._weight_decay = _check_non_negative_float(value, "weight_decay")

    @property
    def epsilon(self) -> float:
        return self._epsilon

    @epsilon.setter
    def epsilon(self, value: float) -> None:
        self._epsilon = _check_non_negative_float(value, "epsilon")

    def extra_repr(self) -> str:
        min_losses = "" if self.min_losses is None else f", min_losses={_format_tensor(self.min_losses)}"
        return (
            f"shape={self.shape}{min_losses}, lr={self.lr}, weight_decay={self.weight_decay}, "
            f"epsilon={self.epsilon}"
        )

    @torch.no_grad()
    def reset(self) -> None:
        self.logits.zero_()
        self.previous_losses.zero_()
        self.has_previous_losses.fill_(False)
        self.step.zero_()
        self.exp_avg.zero_()
        self.exp_avg_sq.zero_()

    def forward(self, values: Tensor, /) -> Tensor:
        _check_same_shape(self.logits, values, "logits")
        gaps = self._gaps(values, "values")
        with torch.no_grad():
            logits = self.logits.to(dtype=values.dtype, device=values.device)
            weights = torch.softmax(logits.flatten(), dim=0).reshape(values.shape)
            normalization = 1.0 / (weights / gaps.detach()).sum()
        if self.training:
            with torch.no_grad():
                self.previous_losses.copy_(values.detach())
                self.has_previous_losses.fill_(True)
        return normalization * (weights * torch.log(gaps)).sum()

    @torch.no_grad()
    def update(self, values: Tensor, /) -> None:
        """
        Adapts the task logits from the change of the values over the last model step.

        :param values: The losses recomputed on the same batch after the model's step. They are
            compared with the values of the last call in training mode, which this consumes: every
            update needs a new call first. Both must be finite (after a skipped step, e.g. by
            ``GradScaler``, do not call it); nothing changes when this raises.
        """

        _check_values(values)
        _check_same_shape(self.logits, values, "logits")
        if not bool(self.has_previous_losses):
            raise RuntimeError(
                "`update` needs the losses before the step: call the FAMO scalarizer on them (in "
                "training mode) before each call to `update`."
            )
        logits = self.logits
        new_values = values.detach().to(logits)
        if not bool(torch.isfinite(new_values).all() & torch.isfinite(self.previous_losses).all()):
            raise ValueError(
                "Parameter `values` and the values of the last call should be finite for "
                f"`FAMO.update`. Found {new_values} after {self.previous_losses}."
            )
        before = torch.log(self._gaps(self.previous_losses, "the values of the last call"))
        after = torch.log(self._gaps(new_values, "values"))
        improvements = (before - after).flatten()  # δ
        flat_logits = logits.flatten()
        weights = torch.softmax(flat_logits, dim=0)
        # J_z^T δ with J_z = diag(z) - z z^T, the (symmetric) Jacobian of the softmax.
        gradient = weights * (improvements - weights @ improvements) + self.weight_decay * flat_logits
        gradient = gradient.reshape(logits.shape)
        self.step += 1
        self.exp_avg.mul_(_ADAM_BETA1).add_(gradient, alpha=1.0 - _ADAM_BETA1)
        self.exp_avg_sq.mul_(_ADAM_BETA2).addcmul_(gradient, gradient, value=1.0 - _ADAM_BETA2)
        step = self.step.to(logits.dtype)
        exp_avg_hat = self.exp_avg / (1.0 - _ADAM_BETA1**step)
        exp_avg_sq_hat = self.exp_avg_sq / (1.0 - _ADAM_BETA2**step)
        logits.sub_(self.lr * exp_avg_hat / (exp_avg_sq_hat.sqrt() + _ADAM_EPS))
        self.has_previous_losses.fill_(False)

    def _gaps(self, values: Tensor, name: str) -> Tensor:
        """Returns ``values - min_losses + epsilon``, checking that none is below zero."""

        gaps = values + self.epsilon
        if self.min_losses is not None:
            gaps = gaps - self.min_losses.to(dtype=values.dtype, device=values.device)
        # `<= 0` rather than `not > 0`, so that NaN passes and gives a NaN result.
        if bool((gaps.detach() <= 0).any()):
            raise ValueError(
                f"Parameter `{name}` should be above `min_losses - epsilon` for `FAMO`. Found "
                f"{values.detach()} with `min_losses` = {self.min_losses}."
            )
        return gaps
