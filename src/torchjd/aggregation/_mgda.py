"""
MGDA: the minimum-norm point of the convex hull of the rows.

From `Multiple-gradient descent algorithm (MGDA) for multiobjective optimization
<https://doi.org/10.1016/j.crma.2012.03.014>`_ (Désidéri, Comptes Rendus Mathématique 2012). The
aggregation is ``J^T w*`` with

``w* = argmin_{w ∈ Δ_m} w^T G w``, ``G = J J^T``, ``Δ_m`` the probability simplex,

found by Frank-Wolfe iterations on the Gramian, as in `Multi-Task Learning as Multi-Objective
Optimization <https://arxiv.org/abs/1810.04650>`_ (Sener and Koltun, NeurIPS 2018). Each iteration
either moves ``w`` towards the vertex ``e_t`` with the smallest ``(G w)_t`` (the classic step) or,
when that gains less, away from the vertex of the support with the largest ``(G w)_a`` (the
away-step variant of Guélat and Marcotte, which converges linearly instead of as ``1/k`` when the
optimum lies inside a face). Both use the exact line search of the quadratic ``w^T G w``.
"""

import torch
from torch import Tensor

from ._aggregator_bases import GramianWeightedAggregator
from ._checks import check_int, check_non_negative_float
from ._weighting_bases import GramianWeighting


def _check_epsilon_and_max_iters(epsilon: float, max_iters: int) -> None:
    check_non_negative_float(epsilon, "epsilon")
    check_int(max_iters, "max_iters", 1)


class MGDAWeighting(GramianWeighting):
    """
    Weights ``w* = argmin_{w ∈ Δ_m} w^T G w`` of the Gramian ``G`` ``[m, m]``, by Frank-Wolfe.

    Starts from uniform weights and stops when the L1 norm of a Frank-Wolfe update is below
    ``epsilon`` or after ``max_iters`` iterations. The weights are non-negative and sum to one.
    Runs under ``torch.no_grad()``: the weights are not differentiated through.

    :param epsilon: Stopping tolerance on the L1 norm of the change of the weights in one iteration.
    :param max_iters: Maximum number of Frank-Wolfe iterations.

    >>> import torch
    >>> from torchjd.aggregation import MGDAWeighting
    >>> MGDAWeighting()(torch.tensor([[4., 0.], [0., 1.]]))
    tensor([0.2000, 0.8000])
    """

    def __init__(self, epsilon: float = 0.001, max_iters: int = 100):
        super().__init__()
        _check_epsilon_and_max_iters(epsilon, max_iters)
        self.epsilon = epsilon
        self.max_iters = max_iters

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}, max_iters={self.max_iters}"

    @torch.no_grad()
    def forward(self, stat: Tensor, /) -> Tensor:
        gramian = stat
        m = gramian.shape[0]
        weights = torch.full((m,), 1.0 / m, dtype=gramian.dtype, device=gramian.device)
        for _ in range(self.max_iters):
            gradient = gramian @ weights  # G w, half the gradient of w^T G w
            squared_norm = weights @ gradient  # ||J^T w||^2
            toward = torch.argmin(gradient)
            # Away vertex: the worst vertex among those that currently have weight.
            away = torch.argmax(torch.where(weights > 0, gradient, gradient.min() - 1.0))
            frank_wolfe_gap = squared_norm - gradient[toward]
            away_gap = gradient[away] - squared_norm
            is_frank_wolfe = frank_wolfe_gap >= away_gap
            direction = torch.where(
                is_frank_wolfe,
                torch.nn.functional.one_hot(toward, m).to(weights) - weights,
                weights - torch.nn.functional.one_hot(away, m).to(weights),
            )
            away_weight = weights[away]
            max_gamma = torch.where(
                is_frank_wolfe,
                torch.ones_like(away_weight),
                away_weight / (1.0 - away_weight).clamp(min=torch.finfo(weights.dtype).tiny),
            )
            curvature = direction @ (gramian @ direction)
            slope = direction @ gradient
            # Exact line search on the quadratic; a flat direction (curvature 0) is not taken.
            safe_curvature = torch.where(curvature > 0, curvature, torch.ones_like(curvature))
            gamma = torch.where(
                curvature > 0,
                torch.minimum((-slope / safe_curvature).clamp(min=0.0), max_gamma),
                torch.zeros_like(curvature),
            )
            step = gamma * direction
            weights = (weights + step).clamp(min=0.0)
            # A full away step removes the away vertex exactly.
            drop = (~is_frank_wolfe) & (gamma >= max_gamma)
            weights = torch.where(
                drop & (torch.arange(m, device=weights.device) == away),
                torch.zeros_like(weights),
                weights,
            )
            weights = weights / weights.sum()
            if float(step.abs().sum()) <= self.epsilon:
                break
        return weights


class MGDA(GramianWeightedAggregator):
    """
    Aggregates the rows into the minimum-norm point of their convex hull (Désidéri's MGDA).

    When that point is non-zero, it has a positive inner product with every row: a step along it
    decreases all objectives. See :class:`MGDAWeighting` for the solver.

    :param epsilon: Stopping tolerance on the L1 norm of the change of the weights in one iteration.
    :param max_iters: Maximum number of Frank-Wolfe iterations.

    >>> import torch
    >>> from torchjd.aggregation import MGDA
    >>> A = MGDA()
    >>> A
    MGDA(epsilon=0.001, max_iters=100)
    >>> A(torch.tensor([[2., 0.], [0., 1.]]))
    tensor([0.4000, 0.8000])
    """

    def __init__(self, epsilon: float = 0.001, max_iters: int = 100):
        super().__init__(MGDAWeighting(epsilon=epsilon, max_iters=max_iters))

    def extra_repr(self) -> str:
        return self.gramian_weighting.extra_repr()
