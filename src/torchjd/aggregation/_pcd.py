"""
PCD (priority-constrained descent): follows the gradient of the first objective (the primary),
bent only as much as needed to guarantee progress on every other (secondary) objective.

With ``g̃_i = s_i g_i`` the gradients normalized by ``s_i = 1 / sqrt(v̂_i + ε)``, ``v̂_i`` the
bias-corrected exponential moving average of ``‖g_i‖²`` over the calls (decay ``β``):

.. math::

    \\tilde d = \\operatorname*{arg\\,min}_{d} \\|d - \\tilde g_1\\|^2
    \\quad \\text{s.t.} \\quad \\tilde g_j^\\top d \\ge τ_j \\|\\tilde g_j\\|^2 \\ \\ (j \\ge 2),
    \\qquad \\tilde d = \\tilde g_1 + \\sum_{j \\ge 2} μ_j \\tilde g_j

with ``μ ≥ 0`` the multipliers of the constraints, and the output is ``d̃`` rescaled to the norm of
``g_1``. ``τ ∈ [0, 1]`` (one value, or one per secondary objective) sets how much progress each
secondary objective is guaranteed (``τ = 0``: only no conflict); the normalization makes it a
scale-free fraction. The multipliers solve the dual problem
``min_{μ ≥ 0} ½ μᵀ G̃_{SS} μ + μᵀ (G̃_{S1} - τ diag(G̃_{SS}))`` on the normalized Gramian ``G̃``,
exactly (Lawson-Hanson active set). Every term is an inner product of rows: PCD is a weighting of
the Gramian. As in torchjd 0.18: a zero ``g_1`` gives zero; constraints that cannot hold together
(e.g. two opposite secondary gradients) are dropped and the output is ``g_1``; a ``d̃`` that is
zero up to rounding gives zero.

Paper: `Not All Objectives Are Born Equal: Priority-Constrained Descent for Hierarchical
Multi-Objective Optimization <https://arxiv.org/abs/2606.29521>`_ (Varam and AlHajri, TMLR 2026).
"""

import torch
from torch import Tensor

from torchjd._stateful import Stateful

from ._aggregator_bases import GramianWeightedAggregator
from ._checks import Delegated, Hyperparameter, real_in
from ._mgda import solve_nonnegative_qp
from ._stateful_utils import LazyStateMixin, check_state_size
from ._weighting_bases import GramianWeighting


def _check_tau(name: str, tau: object) -> float | Tensor:
    if isinstance(tau, Tensor):
        if tau.dim() != 1 or not tau.is_floating_point():
            raise ValueError(
                f"Parameter `{name}` should be a float or a floating-point vector (1 dimension). "
                f"Found shape {tuple(tau.shape)} and dtype {tau.dtype}."
            )
        if not bool(((tau >= 0.0) & (tau <= 1.0)).all()):
            raise ValueError(f"Parameter `{name}` should have values in [0, 1]. Found {tau}.")
        return tau.detach().clone()
    return real_in(0.0, 1.0)(name, tau)


class PCDWeighting(LazyStateMixin, GramianWeighting, Stateful):
    """
    Gramian weighting of :class:`PCD`: the weights ``[m]`` such that ``weights @ J`` is the PCD
    direction. The first row and column of the Gramian are the primary objective's.

    :param tau: The guaranteed fraction ``τ ∈ [0, 1]`` of normalized progress of each secondary
        objective: a float, or a vector with one value per secondary objective (``m - 1``).
    :param beta: The decay ``β ∈ [0, 1)`` of the moving average of the squared gradient norms.
    :param eps: The non-negative ``ε`` added to the moving average before its inverse square root.

    >>> import torch
    >>> from torchjd.aggregation import PCDWeighting
    >>> weighting = PCDWeighting(tau=0.5)
    >>> weighting(torch.tensor([[1.0, -1.0], [-1.0, 4.0]])).round(decimals=4)
    tensor([1.0000, 0.5000])
    """

    squared_norms: Tensor
    step: Tensor
    tau = Hyperparameter(_check_tau)
    beta = Hyperparameter(real_in(0.0, 1.0, high_inclusive=False))
    eps = Hyperparameter(real_in(0.0))

    def __init__(self, tau: float | Tensor = 0.02, beta: float = 0.999, eps: float = 1e-8):
        super().__init__()
        self.tau = tau
        self.beta = beta
        self.eps = eps
        self.register_buffer("squared_norms", torch.zeros(0))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def reset(self) -> None:
        """Forgets the moving average of the squared norms."""
        self._empty_buffers("squared_norms")
        self.step.zero_()

    def _taus(self, m: int, like: Tensor) -> Tensor:
        if isinstance(self.tau, Tensor):
            if self.tau.shape[0] != m - 1:
                raise ValueError(
                    f"Parameter `tau` should have one value per secondary objective ({m - 1}). "
                    f"Found {self.tau.shape[0]} values."
                )
            return self.tau.to(dtype=like.dtype, device=like.device)
        return torch.full((m - 1,), self.tau, dtype=like.dtype, device=like.device)

    @torch.no_grad()
    def forward(self, gramian: Tensor, /) -> Tensor:
        m = gramian.shape[0]
        check_state_size(self.squared_norms, m, "PCD")
        taus = self._taus(m, gramian)
        diagonal = gramian.diagonal().clamp(min=0.0)
        previous = self.squared_norms if self.squared_norms.numel() else torch.zeros_like(diagonal)
        average = self.beta * previous.to(diagonal) + (1.0 - self.beta) * diagonal
        self.squared_norms = average
        self.step += 1
        debiased = average / (1.0 - self.beta ** int(self.step))
        denominators = (debiased + self.eps).sqrt()
        # A zero average means a gradient that was always zero: its scale does not matter.
        safe = torch.where(denominators > 0, denominators, torch.ones_like(denominators))
        scales = torch.where(denominators > 0, 1.0 / safe, torch.zeros_like(denominators))

        weights = torch.zeros(m, dtype=gramian.dtype, device=gramian.device)
        if not diagonal[0] > 0:
            return weights  # a zero primary gradient gives a zero update
        weights[0] = 1.0
        if m > 1:
            normalized = (gramian * torch.outer(scales, scales)).double()
            secondary = normalized[1:, 1:]
            linear = normalized[1:, 0] - taus.double() * secondary.diagonal()
            multipliers = solve_nonnegative_qp(secondary, linear, 3 * m)
            slacks = secondary @ multipliers + linear  # g̃_j·d̃ - τ_j ||g̃_j||², ≥ 0 if feasible
            tolerance = torch.finfo(gramian.dtype).eps ** 0.5 * float(normalized.diagonal().max())
            if bool((slacks >= -tolerance).all()):
                weights[1:] = multipliers.to(gramian.dtype)
            # else: the constraints contradict each other; they are dropped (the output is g_1).
        normalized_weights = weights * scales  # d̃ = Σ_i weights_i s_i g_i
        squared_norm = normalized_weights @ gramian @ normalized_weights
        magnitude = (normalized_weights.abs() @ diagonal.sqrt()) ** 2
        precision = 10.0 * torch.finfo(gramian.dtype).eps
        if not squared_norm > precision * magnitude:
            return torch.zeros_like(weights)  # d̃ = 0 up to rounding
        return normalized_weights * (diagonal[0] / squared_norm).sqrt()

    def extra_repr(self) -> str:
        tau = self.tau.tolist() if isinstance(self.tau, Tensor) else self.tau
        return f"tau={tau!r}, beta={self.beta!r}, eps={self.eps!r}"


class PCD(GramianWeightedAggregator, Stateful):
    """
    Aggregator that follows the first row (the primary objective) with the smallest change that
    guarantees progress on every other row (PCD), rescaled to the norm of the first row.

    :param tau: The guaranteed fraction ``τ ∈ [0, 1]`` of normalized progress of each secondary
        objective (a float, or one value per secondary objective).
    :param beta: The decay ``β ∈ [0, 1)`` of the moving average of the squared gradient norms.
    :param eps: The non-negative ``ε`` added to the moving average before its inverse square root.

    >>> import torch
    >>> from torchjd.aggregation import PCD
    >>> aggregator = PCD(tau=0.5)
    >>> aggregator(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]))
    tensor([0.1691, 0.9856])
    """

    tau = Delegated()
    beta = Delegated()
    eps = Delegated()

    def __init__(self, tau: float | Tensor = 0.02, beta: float = 0.999, eps: float = 1e-8):
        super().__init__(PCDWeighting(tau=tau, beta=beta, eps=eps))

    def reset(self) -> None:
        """Forgets the moving average of the squared norms."""
        self.gramian_weighting.reset()

    def extra_repr(self) -> str:
        return self.gramian_weighting.extra_repr()
