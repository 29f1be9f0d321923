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
rate ``w_lr`` and (L2) weight decay ``γ``, with Adam's default ``betas=(0.9, 0.999)`` and
``eps=1e-8``. It is implemented here with the Adam moments in buffers, so the whole FAMO state
round-trips through ``state_dict``.
"""

import torch
from torch import Tensor, nn

from ._scalarizer_bases import (
    StatefulScalarizer,
    _check_losses,
    _check_non_negative_float,
    _check_num_losses,
    _check_positive_float,
    _check_positive_int,
    _check_vector,
    _format_tensor,
)

_ADAM_BETA1 = 0.9
_ADAM_BETA2 = 0.999
_ADAM_EPS = 1e-8


class FAMO(StatefulScalarizer):
    """
    Returns ``c sum_i z_i log(ℓ_i - ℓ*_i + ε)``; :meth:`update` then adapts the weights ``z``.

    The task logits ``ξ`` are the parameter ``logits`` ``[num_tasks]`` (initialized at ``0``,
    uniform weights). They are learned by FAMO itself, in :meth:`update`, not by backpropagation:
    the scalar is built with ``z`` detached, so the logits never get a ``.grad`` and do not need
    to be (but may harmlessly be) given to your optimizer. The losses of the last call in training
    mode, the Adam moments of the logits and the step count are buffers, so :meth:`reset` and
    ``state_dict`` cover them.

    One training step: compute the losses, ``famo(losses).backward()``, step the model's
    optimizer, recompute the losses on the same batch without gradients and pass them to
    :meth:`update`.

    :param num_tasks: The number of losses ``m`` that the scalarizer will be called on.
    :param min_losses: The lower bounds ``ℓ*`` ``[m]`` of the losses. ``None`` (default) means
        zeros, the bound of non-negative losses. The losses must stay above ``ℓ* - ε``.
    :param w_lr: The learning rate ``β > 0`` of the logits' Adam step. The paper uses ``0.025``.
    :param gamma: The weight decay ``γ >= 0`` of the logits. The paper uses ``0.001``.
    :param epsilon: The constant ``ε >= 0`` added inside the logarithms.

    >>> import torch
    >>> from torchjd.scalarization import FAMO
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Linear(3, 2)
    >>> famo = FAMO(num_tasks=2)
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

    min_losses: Tensor
    previous_losses: Tensor
    has_previous_losses: Tensor
    step: Tensor
    exp_avg: Tensor
    exp_avg_sq: Tensor

    def __init__(
        self,
        num_tasks: int,
        min_losses: Tensor | None = None,
        w_lr: float = 0.025,
        gamma: float = 0.001,
        epsilon: float = 1e-8,
    ):
        super().__init__()
        _check_positive_int(num_tasks, "num_tasks")
        _check_positive_float(w_lr, "w_lr")
        _check_non_negative_float(gamma, "gamma")
        _check_non_negative_float(epsilon, "epsilon")
        if min_losses is None:
            self._has_min_losses = False
            min_losses = torch.zeros(num_tasks)
        else:
            _check_vector(min_losses, "min_losses")
            if min_losses.shape[0] != num_tasks:
                raise ValueError(
                    f"Parameter `min_losses` should have `num_tasks` = {num_tasks} elements. "
                    f"Found shape {tuple(min_losses.shape)}."
                )
            self._has_min_losses = True
            min_losses = min_losses.detach().clone()
        self.num_tasks = num_tasks
        self.w_lr = w_lr
        self.gamma = gamma
        self.epsilon = epsilon
        self.logits = nn.Parameter(torch.zeros(num_tasks), requires_grad=False)
        self.register_buffer("min_losses", min_losses)
        self.register_buffer("previous_losses", torch.zeros(num_tasks))
        self.register_buffer("has_previous_losses", torch.zeros((), dtype=torch.bool))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("exp_avg", torch.zeros(num_tasks))
        self.register_buffer("exp_avg_sq", torch.zeros(num_tasks))

    def extra_repr(self) -> str:
        min_losses = ""
        if self._has_min_losses:
            min_losses = f", min_losses={_format_tensor(self.min_losses)}"
        return (
            f"num_tasks={self.num_tasks}{min_losses}, w_lr={self.w_lr}, gamma={self.gamma}, "
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

    def scalarize(self, losses: Tensor) -> Tensor:
        _check_num_losses(losses, self.num_tasks, "task")
        gaps = self._gaps(losses, "losses")
        with torch.no_grad():
            weights = torch.softmax(self.logits.to(dtype=losses.dtype, device=losses.device), dim=0)
            normalization = 1.0 / (weights / gaps.detach()).sum()
        if self.training:
            with torch.no_grad():
                self.previous_losses.copy_(losses.detach())
                self.has_previous_losses.fill_(True)
        return normalization * (weights * torch.log(gaps)).sum()

    @torch.no_grad()
    def update(self, new_losses: Tensor) -> None:
        """
        Adapts the task logits from the change of the losses over the last model step.

        :param new_losses: The losses ``[m]`` recomputed on the same batch after the model's step.
            They are compared with the losses of the last call in training mode, which this
            consumes: every update needs a new call first.
        """

        _check_losses(new_losses)
        _check_num_losses(new_losses, self.num_tasks, "task")
        if not bool(self.has_previous_losses):
            raise RuntimeError(
                "`update` needs the losses before the step: call the FAMO scalarizer on them (in "
                "training mode) before each call to `update`."
            )
        logits = self.logits
        before = torch.log(self._gaps(self.previous_losses, "previous_losses"))
        after = torch.log(self._gaps(new_losses.detach().to(logits), "new_losses"))
        improvements = before - after  # δ
        weights = torch.softmax(logits, dim=0)
        # J_z^T δ with J_z = diag(z) - z z^T, the (symmetric) Jacobian of the softmax.
        gradient = weights * (improvements - weights @ improvements) + self.gamma * logits
        self.step += 1
        self.exp_avg.mul_(_ADAM_BETA1).add_(gradient, alpha=1.0 - _ADAM_BETA1)
        self.exp_avg_sq.mul_(_ADAM_BETA2).addcmul_(gradient, gradient, value=1.0 - _ADAM_BETA2)
        step = self.step.to(logits.dtype)
        exp_avg_hat = self.exp_avg / (1.0 - _ADAM_BETA1**step)
        exp_avg_sq_hat = self.exp_avg_sq / (1.0 - _ADAM_BETA2**step)
        logits.sub_(self.w_lr * exp_avg_hat / (exp_avg_sq_hat.sqrt() + _ADAM_EPS))
        self.has_previous_losses.fill_(False)

    def _gaps(self, losses: Tensor, name: str) -> Tensor:
        """Returns ``losses - min_losses + epsilon``, checking that they are positive."""

        min_losses = self.min_losses.to(dtype=losses.dtype, device=losses.device)
        gaps = losses - min_losses + self.epsilon
        if not bool((gaps.detach() > 0).all()):
            raise ValueError(
                f"Parameter `{name}` should be above `min_losses - epsilon` for `FAMO`. Found "
                f"{losses.detach()} with `min_losses` = {min_losses}."
            )
        return gaps
