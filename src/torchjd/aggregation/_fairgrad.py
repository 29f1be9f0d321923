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
from ._stateful_utils import check_positive_int, check_real
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


class FairGradWeighting(GramianWeighting):
    """
    Gramian weighting of :class:`FairGrad`: returns the positive solution ``w`` of
    ``(G w)_i = w_i^{-1/α}``.

    :param alpha: The fairness parameter ``α > 0``: ``1`` is proportional fairness, larger values
        favour the objectives that progress least (the paper's experiments tune it per benchmark;
        ``1`` is this library's default).
    :param max_iter: The maximum number of Newton iterations.

    >>> import torch
    >>> from torchjd.aggregation import FairGradWeighting
    >>> weighting = FairGradWeighting(alpha=1.0)
    >>> weighting(torch.tensor([[4.0, 0.0], [0.0, 1.0]]))
    tensor([0.5000, 1.0000])
    """

    def __init__(self, alpha: float = 1.0, max_iter: int = 100):
        super().__init__()
        self.alpha = check_real("alpha", alpha, 0.0, None, low_inclusive=False)
        self.max_iter = check_positive_int("max_iter", max_iter)

    @torch.no_grad()
    def forward(self, stat: Tensor, /) -> Tensor:
        return _solve_fair_system(stat, self.alpha, self.max_iter)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha!r}, max_iter={self.max_iter!r}"


class FairGrad(GramianWeightedAggregator):
    """
    Aggregator that combines the gradients with α-fair weights (FairGrad): ``Jᵀ w`` where ``w > 0``
    solves ``(J Jᵀ w)_i = w_i^{-1/α}``.

    :param alpha: The fairness parameter ``α > 0``.
    :param max_iter: The maximum number of Newton iterations.

    >>> import torch
    >>> from torchjd.aggregation import FairGrad
    >>> aggregator = FairGrad(alpha=1.0)
    >>> aggregator(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
    tensor([1.0000, 1.0000])
    """

    weighting: FairGradWeighting

    def __init__(self, alpha: float = 1.0, max_iter: int = 100):
        super().__init__(FairGradWeighting(alpha=alpha, max_iter=max_iter))

    @property
    def alpha(self) -> float:
        return self.gramian_weighting.alpha

    def extra_repr(self) -> str:
        return self.gramian_weighting.extra_repr()
