"""
PCD (priority-constrained descent): follows the gradient of the first objective (the primary),
bent only as much as needed to guarantee progress on every other (secondary) objective.

With ``g̃_i = g_i / s_i`` the gradients normalized by ``s_i = sqrt(v_i)``, ``v_i`` a moving average
of ``‖g_i‖²``:

.. math::

    \\tilde d = \\operatorname*{arg\\,min}_{d} \\|d - \\tilde g_1\\|^2
    \\quad \\text{s.t.} \\quad \\tilde g_j^\\top d \\ge τ \\|\\tilde g_j\\|^2 \\ \\ (j \\ge 2),
    \\qquad d = s_1 \\tilde d = s_1 \\Big(\\tilde g_1 + \\sum_{j \\ge 2} μ_j \\tilde g_j\\Big)

with ``μ ≥ 0`` the multipliers of the constraints. ``τ ∈ [0, 1]`` sets how much progress each
secondary objective is guaranteed (``τ = 0``: only no conflict); the normalization makes the
result invariant to the scale of each objective. The multipliers solve the dual problem
``min_{μ ≥ 0} ½ μᵀ G̃_{SS} μ + μᵀ (G̃_{S1} - τ diag(G̃_{SS}))`` on the normalized Gramian ``G̃``,
solved exactly by an active-set method (Lawson-Hanson), in torch; a ridge of ``10·eps·max diag``
keeps it solvable when constraints contradict each other (then they hold only approximately).
Every term is an inner product of rows: PCD is a weighting of the Gramian.

The moving average is ``v ← β v + (1 - β) diag(G)``, started at the first call's ``diag(G)``, and
kept in the buffer ``squared_norms`` ``[m]``. The result is scaled back by ``s_1``, so that the
first call returns ``g_1`` itself when no constraint is active.

Paper: `Not All Objectives Are Born Equal: Priority-Constrained Descent for Hierarchical
Multi-Objective Optimization <https://arxiv.org/abs/2606.29521>`_ (Varam and AlHajri, TMLR 2026).
This module is the library's reading of the paper's published problem statement: the EMA rate
``beta``, the defaults and the rescaling by ``s_1`` are this library's choices.
"""

import torch
from torch import Tensor

from torchjd._stateful import Stateful

from ._aggregator_bases import GramianWeightedAggregator
from ._stateful_utils import LazyStateMixin, check_real, check_state_size
from ._weighting_bases import GramianWeighting


def _solve_nonnegative_qp(matrix: Tensor, vector: Tensor) -> Tensor:
    """
    Returns ``argmin_{x ≥ 0} ½ xᵀ A x + bᵀ x`` for a positive definite ``A`` ``[k, k]``.

    Lawson-Hanson active-set method: exact up to rounding, at most a few passes per constraint.
    """
    k = vector.shape[0]
    x = torch.zeros_like(vector)
    free = torch.zeros(k, dtype=torch.bool, device=vector.device)
    scale = max(float(matrix.diagonal().abs().max()), float(vector.abs().max()), 1e-300)
    tolerance = 10.0 * torch.finfo(vector.dtype).eps * scale
    for _ in range(3 * k + 3):
        gradient = matrix @ x + vector
        candidates = ~free & (gradient < -tolerance)
        if not bool(candidates.any()):
            break
        free[torch.where(candidates, gradient, torch.inf).argmin()] = True
        for _ in range(k + 1):
            indices = free.nonzero().squeeze(1)
            z = torch.zeros_like(vector)
            z[indices] = torch.linalg.solve(matrix[indices][:, indices], -vector[indices])
            if bool((z[indices] > 0).all()):
                x = z
                break
            # Move towards z until a free coordinate reaches 0, and fix it there.
            blocking = free & (z <= 0)
            ratios = x[blocking] / (x[blocking] - z[blocking])
            t = ratios.min()
            x = x + t * (z - x)
            free &= x > 0
            free[blocking.nonzero().squeeze(1)[ratios.argmin()]] = False
            x = torch.where(free, x, torch.zeros_like(x))
    return x


class PCDWeighting(LazyStateMixin, GramianWeighting, Stateful):
    """
    Gramian weighting of :class:`PCD`: the weights ``[m]`` such that ``weights @ J`` is the PCD
    direction (the first weight is always 1).

    :param tau: The guaranteed fraction ``τ ∈ [0, 1]`` of progress on each secondary objective.
    :param beta: The rate ``β ∈ [0, 1)`` of the moving average of the squared gradient norms
        (``0``: normalize by the current norms).

    >>> import torch
    >>> from torchjd.aggregation import PCDWeighting
    >>> weighting = PCDWeighting(tau=0.5)
    >>> weighting(torch.tensor([[1.0, -1.0], [-1.0, 4.0]]))
    tensor([1.0000, 0.5000])
    """

    squared_norms: Tensor

    def __init__(self, tau: float = 0.5, beta: float = 0.99):
        super().__init__()
        self.tau = check_real("tau", tau, 0.0, 1.0)
        self.beta = check_real("beta", beta, 0.0, 1.0, high_inclusive=False)
        self.register_buffer("squared_norms", torch.zeros(0))

    def reset(self) -> None:
        """Forgets the moving average of the squared norms."""
        self._empty_buffers("squared_norms")

    @torch.no_grad()
    def forward(self, stat: Tensor, /) -> Tensor:
        gramian = stat
        m = gramian.shape[0]
        check_state_size(self.squared_norms, m, "PCD")
        diagonal = gramian.diagonal().clamp(min=0.0)
        if self.squared_norms.numel() == 0:
            squared_norms = diagonal.clone()
        else:
            previous = self.squared_norms.to(dtype=gramian.dtype, device=gramian.device)
            squared_norms = self.beta * previous + (1.0 - self.beta) * diagonal
        self.squared_norms = squared_norms

        weights = torch.zeros(m, dtype=gramian.dtype, device=gramian.device)
        weights[0] = 1.0
        scales = squared_norms.sqrt()
        if m == 1:
            return weights
        inverse_scales = torch.where(scales > 0, 1.0 / scales.clamp(min=torch.finfo(scales.dtype).tiny), 0.0)
        normalized = gramian * inverse_scales[:, None] * inverse_scales[None, :]
        secondary = normalized[1:, 1:]
        ridge = 10.0 * torch.finfo(gramian.dtype).eps * secondary.diagonal().max().clamp(min=1.0)
        eye = torch.eye(m - 1, dtype=gramian.dtype, device=gramian.device)
        linear = normalized[1:, 0] - self.tau * secondary.diagonal()
        multipliers = _solve_nonnegative_qp(secondary + ridge * eye, linear)
        # d = s_1 (g_1 / s_1 + Σ μ_j g_j / s_j)
        weights[1:] = scales[0] * multipliers * inverse_scales[1:]
        return weights

    def extra_repr(self) -> str:
        return f"tau={self.tau!r}, beta={self.beta!r}"


class PCD(GramianWeightedAggregator, Stateful):
    """
    Aggregator that follows the first row (the primary objective) with the smallest change that
    guarantees progress on every other row (PCD).

    :param tau: The guaranteed fraction ``τ ∈ [0, 1]`` of progress on each secondary objective.
    :param beta: The rate ``β ∈ [0, 1)`` of the moving average of the squared gradient norms.

    >>> import torch
    >>> from torchjd.aggregation import PCD
    >>> aggregator = PCD(tau=0.5)
    >>> aggregator(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]))
    tensor([0.1464, 0.8536])
    """

    weighting: PCDWeighting

    def __init__(self, tau: float = 0.5, beta: float = 0.99):
        super().__init__(PCDWeighting(tau=tau, beta=beta))

    def reset(self) -> None:
        """Forgets the moving average of the squared norms."""
        self.gramian_weighting.reset()

    def extra_repr(self) -> str:
        return self.gramian_weighting.extra_repr()
