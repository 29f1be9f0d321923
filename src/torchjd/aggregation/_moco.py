"""
MoCo (multi-objective gradient correction): tracks the Jacobian with a moving average to reduce
the bias of stochastic MGDA, and updates the weights of the objectives by projected gradient
steps on the simplex.

.. math::

    Y_{t+1} = Y_t - β \\left(Y_t - J_t\\right), \\qquad
    λ_{t+1} = Π_Δ\\left(λ_t - γ \\left(Y_{t+1} Y_{t+1}^\\top + ρ I\\right) λ_t\\right), \\qquad
    d_t = Y_{t+1}^\\top λ_{t+1}

where ``Π_Δ`` is the Euclidean projection onto the probability simplex. ``Y`` starts at zero and
``λ`` at ``1/m``; they are kept in the buffers ``tracked_jacobian`` ``[m, n]`` and ``weights``
``[m]``. The direction is a combination of the tracked rows, not of the current ones, so MoCo is
not a weighting of the current matrix. A call whose result is non-finite leaves the state
unchanged. The paper also projects ``Y`` onto a bounded set for its
analysis; like its experiments, this implementation does not.

Paper: `Mitigating Gradient Bias in Multi-objective Learning: A Provably Convergent Approach
<https://openreview.net/forum?id=dLAYGdKTi2>`_ (Fernando et al., ICLR 2023).
"""

import torch
from torch import Tensor

from torchjd._stateful import Stateful

from ._aggregator_bases import Aggregator
from ._stateful_utils import (
    LazyStateMixin,
    check_real,
    check_state_size,
    project_onto_simplex,
)


class MoCo(LazyStateMixin, Aggregator, Stateful):
    """
    Aggregator that combines a moving average ``Y`` of the Jacobians with simplex weights ``λ``
    updated by projected gradient steps on ``½‖Yᵀλ‖² + ρ/2 ‖λ‖²`` (MoCo).

    :param beta: The tracking rate ``β ∈ (0, 1]`` of the moving average of the Jacobian.
    :param gamma: The step size ``γ > 0`` of the projected gradient step on ``λ``.
    :param rho: The regularization ``ρ ≥ 0`` of ``λ``.

    >>> import torch
    >>> from torchjd.aggregation import MoCo
    >>> aggregator = MoCo(beta=0.5, gamma=0.1, rho=0.0)
    >>> aggregator(torch.tensor([[2.0, 0.0], [0.0, 2.0]]))
    tensor([0.5000, 0.5000])
    >>> aggregator(torch.tensor([[2.0, 0.0], [0.0, 4.0]]))
    tensor([0.9000, 1.0000])
    """

    tracked_jacobian: Tensor
    weights: Tensor

    def __init__(self, beta: float = 0.5, gamma: float = 0.1, rho: float = 0.0):
        super().__init__()
        self.beta = check_real("beta", beta, 0.0, 1.0, low_inclusive=False)
        self.gamma = check_real("gamma", gamma, 0.0, None, low_inclusive=False)
        self.rho = check_real("rho", rho, 0.0, None)
        self.register_buffer("tracked_jacobian", torch.zeros(0))
        self.register_buffer("weights", torch.zeros(0))

    def reset(self) -> None:
        """Sets ``Y`` back to zero and ``λ`` to uniform weights."""
        self._empty_buffers("tracked_jacobian", "weights")

    @torch.no_grad()
    def forward(self, matrix: Tensor, /) -> Tensor:
        m = matrix.shape[0]
        check_state_size(self.weights, m, "MoCo")
        if self.tracked_jacobian.numel() != 0 and self.tracked_jacobian.shape != matrix.shape:
            raise ValueError(
                f"The state of this MoCo was built for a matrix of shape "
                f"{tuple(self.tracked_jacobian.shape)}, but the input has shape "
                f"{tuple(matrix.shape)}. Call `reset()` before changing it."
            )
        if self.weights.numel() == 0:
            tracked = torch.zeros_like(matrix)
            weights = torch.full((m,), 1.0 / m, dtype=matrix.dtype, device=matrix.device)
        else:
            tracked = self.tracked_jacobian.to(dtype=matrix.dtype, device=matrix.device)
            weights = self.weights.to(dtype=matrix.dtype, device=matrix.device)

        tracked = tracked - self.beta * (tracked - matrix)
        step = tracked @ (tracked.T @ weights) + self.rho * weights
        weights = project_onto_simplex(weights - self.gamma * step)
        if not bool(torch.isfinite(weights).all()):
            # The products overflowed (a finite matrix whose Gramian does not fit the dtype): the
            # step is non-finite, so it is skipped as a whole and the state is left as it was.
            return torch.full_like(matrix[0], float("nan"))

        self.tracked_jacobian = tracked
        self.weights = weights
        return weights @ tracked

    def extra_repr(self) -> str:
        return f"beta={self.beta!r}, gamma={self.gamma!r}, rho={self.rho!r}"
