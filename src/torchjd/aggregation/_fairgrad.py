"""
FairGrad: weights the gradients so that the progress of each objective follows an α-fair
allocation.

The weights ``w > 0`` solve the nonlinear system

.. math::

    (G w)_i = w_i^{-1/α} \\qquad \\text{for every } i,

where ``G = J Jᵀ`` is the Gramian, and the aggregation is ``Jᵀ w``. ``α = 1`` is proportional
fairness, ``α → ∞`` tends to max-min fairness.

The system is the stationarity condition of the strictly convex function
``½ wᵀ G w - Σ_i h(w_i)`` with ``h'(w) = w^{-1/α}``, which is minimized by a damped Newton method
(fraction-to-the-boundary rule to keep ``w > 0``, Armijo backtracking), pure torch, on the input's
device and dtype. The Gramian is first divided by its largest diagonal entry ``c`` (the solution of
the scaled system is rescaled by ``c^{-α/(α+1)}``), and a ridge of ``10·eps`` (``eps`` being the
dtype's machine epsilon) is added to its diagonal so that a solution exists even when ``G`` is
singular: the weights of zero or opposite gradients are then large but finite. On exit the
relative residual ``|(Gw)_i - w_i^{-1/α}| / w_i^{-1/α}`` is below ``sqrt(eps)`` (in practice near
``eps``, as one more Newton step is taken), up to the effect of the ridge. A zero Gramian gives zero weights.

Paper: `Fair Resource Allocation in Multi-Task Learning <https://arxiv.org/abs/2402.15638>`_
(Ban and Ji, ICML 2024).
"""

import torch
from torch import Tensor

from ._aggregator_bases import GramianWeightedAggregator
from ._checks import Delegated, Hyperparameter, int_at_least, real_in
from ._weighting_bases import GramianWeighting


def _fair_objective(gramian: Tensor, weights: Tensor, exponent: float) -> Tensor:
    """``½ wᵀ G w - Σ h(w_i)`` with ``h'(w) = w^{-exponent}``."""
    quadratic = 0.5 * weights @ gramian @ weights
    if exponent == 1.0:
        barrier = weights.log().sum()
    else:
        barrier = (weights ** (1.0 - exponent)).sum() / (1.0 - exponent)
    return quadratic - barrier


def _solve_fair_system(gramian: Tensor, alpha: float, max_iter: int) -> Tensor:
    m = gramian.shape[0]
    dtype, device = gramian.dtype, gramian.device
    scale = gramian.diagonal().max()
    if not scale > 0:
        return torch.zeros(m, dtype=dtype, device=device)

    exponent = 1.0 / alpha
    eps = torch.finfo(dtype).eps
    tolerance = eps**0.5
    eye = torch.eye(m, dtype=dtype, device=device)
    scaled = gramian / scale + 10.0 * eps * eye

    # Start where the system holds on average: (1ᵀ G 1 / m) s = s^{-1/α}.
    mean_row_sum = scaled.sum() / m
    start = mean_row_sum.clamp(min=eps) ** (-alpha / (alpha + 1.0))
    weights = torch.full((m,), float(start), dtype=dtype, device=device)

    polishing = False
    for _ in range(max_iter):
        targets = weights ** (-exponent)
        residual = scaled @ weights - targets
        if polishing:
            break
        # Newton converges quadratically near the solution: one more step after reaching the
        # tolerance brings the residual to rounding level.
        polishing = bool((residual.abs() <= tolerance * targets).all())
        hessian = scaled + torch.diag(exponent * targets / weights)
        step = torch.linalg.solve(hessian, residual)
        # Largest step keeping w > 0, then backtrack until the objective decreases enough.
        shrinking = step > 0
        max_step = (weights[shrinking] / step[shrinking]).min() if bool(shrinking.any()) else None
        t = 1.0 if max_step is None else min(1.0, 0.99 * float(max_step))
        current = _fair_objective(scaled, weights, exponent)
        slope = float(residual @ step)
        for _ in range(60):
            candidate = weights - t * step
            if _fair_objective(scaled, candidate, exponent) <= current - 1e-4 * t * slope:
                break
            t *= 0.5
        else:
            # No decrease is measurable any more: the objective is flat to rounding level.
            break
        weights = candidate

    return weights * scale ** (-alpha / (alpha + 1.0))


_DEFAULT_MAX_ITERS = 100


def _check_max_iters(name: str, value: object) -> int | None:
    return None if value is None else int_at_least(1)(name, value)


class FairGradWeighting(GramianWeighting):
    """
    Gramian weighting of :class:`FairGrad`: returns the positive solution ``w`` of
    ``(G w)_i = w_i^{-1/α}``.

    :param alpha: The fairness parameter ``α ≥ 0``: ``1`` is proportional fairness, larger values
        favour the objectives that progress least (the paper's experiments tune it per benchmark).
        ``0`` is the linear scalarization: uniform weights ``1/m``.
    :param max_iters: The maximum number of Newton iterations; ``None`` means 100. The solver
        usually stops after far fewer, at the solution (unlike torchjd 0.18, whose ``max_iters``
        bounds SciPy's least-squares evaluations, and which can stop before it).

    >>> import torch
    >>> from torchjd.aggregation import FairGradWeighting
    >>> weighting = FairGradWeighting(alpha=1.0)
    >>> weighting(torch.tensor([[4.0, 0.0], [0.0, 1.0]]))
    tensor([0.5000, 1.0000])
    """

    alpha = Hyperparameter(real_in(0.0))
    max_iters = Hyperparameter(_check_max_iters)

    def __init__(self, alpha: float, max_iters: int | None = None):
        super().__init__()
        self.alpha = alpha
        self.max_iters = max_iters

    @torch.no_grad()
    def forward(self, gramian: Tensor, /) -> Tensor:
        m = gramian.shape[0]
        if self.alpha == 0.0:
            return torch.full((m,), 1.0 / m, dtype=gramian.dtype, device=gramian.device)
        max_iters = _DEFAULT_MAX_ITERS if self.max_iters is None else self.max_iters
        return _solve_fair_system(gramian, self.alpha, max_iters)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha!r}, max_iters={self.max_iters!r}"


class FairGrad(GramianWeightedAggregator):
    """
    Aggregator that combines the gradients with α-fair weights (FairGrad): ``Jᵀ w`` where ``w > 0``
    solves ``(J Jᵀ w)_i = w_i^{-1/α}``.

    :param alpha: The fairness parameter ``α ≥ 0`` (``0``: the mean).
    :param max_iters: The maximum number of Newton iterations; ``None`` means 100.

    >>> import torch
    >>> from torchjd.aggregation import FairGrad
    >>> aggregator = FairGrad(alpha=1.0)
    >>> aggregator(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
    tensor([1.0000, 1.0000])
    """

    alpha = Delegated()
    max_iters = Delegated()

    def __init__(self, alpha: float, max_iters: int | None = None):
        super().__init__(FairGradWeighting(alpha=alpha, max_iters=max_iters))

    def extra_repr(self) -> str:
        return self.gramian_weighting.extra_repr()
