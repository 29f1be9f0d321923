"""
CAGrad: the direction closest to the mean gradient that best improves the worst objective.

From `Conflict-Averse Gradient Descent for Multi-task Learning <https://arxiv.org/abs/2110.14048>`_
(Liu et al., NeurIPS 2021). With ``g_0 = (1/m) Σ_i g_i`` the mean row, the primal problem is

``max_d min_i g_i · d`` subject to ``||d - g_0|| ≤ c ||g_0||``,

solved through its dual on the simplex ``Δ_m``: with ``g_w = Σ_i w_i g_i`` and ``φ = c² ||g_0||²``,

``w* = argmin_{w ∈ Δ_m} g_w · g_0 + sqrt(φ) ||g_w||``, and ``d* = g_0 + sqrt(φ) / ||g_w*|| g_w*``.

Everything only needs the Gramian ``G = J J^T``: ``g_w · g_0 = w^T G 1 / m``,
``||g_w||² = w^T G w`` and ``||g_0||² = 1^T G 1 / m²``. The weights of ``d*`` are
``1/m + λ w*`` with ``λ = c ||g_0|| / (||g_w*|| + norm_eps)``. Following the paper, ``d*`` is not
rescaled (the authors' code optionally divides it by ``1 + c²``).
"""

import torch
from torch import Tensor

from ._aggregator_bases import GramianWeightedAggregator
from ._checks import Delegated, Hyperparameter, real_in
from ._weighting_bases import GramianWeighting

_MAX_ITERS = 1000
_MAX_BACKTRACKS = 60
_TOLERANCE_FACTOR = 64  # stop when an iteration moves w by less than this many eps (L1)


def _project_onto_simplex(vector: Tensor) -> Tensor:
    """Euclidean projection of ``vector`` ``[m]`` onto the probability simplex (sort-based)."""
    sorted_values, _ = torch.sort(vector, descending=True)
    shifted_cumsum = torch.cumsum(sorted_values, dim=0) - 1.0
    counts = torch.arange(1, vector.shape[0] + 1, dtype=vector.dtype, device=vector.device)
    is_support = sorted_values - shifted_cumsum / counts > 0
    support_size = is_support.sum()  # at least 1: the first entry always qualifies
    threshold = shifted_cumsum[support_size - 1] / support_size.to(vector.dtype)
    return (vector - threshold).clamp(min=0.0)


class CAGradWeighting(GramianWeighting):
    """
    Weights ``1/m + λ w*`` of CAGrad, computed from the Gramian ``G`` ``[m, m]``.

    The dual ``min_{w ∈ Δ_m} w^T G 1 / m + c ||g_0|| sqrt(w^T G w)`` is convex; it is solved by
    projected gradient descent on the simplex with backtracking line search (on ``G`` normalized by
    its trace, so that the tolerances are scale-free), starting from uniform weights. Runs under
    ``torch.no_grad()``.

    :param c: The radius of the ball around ``g_0``, relative to ``||g_0||``; ``c = 0`` gives the
        mean. The paper's default is ``0.5`` (its convergence guarantee needs ``c < 1``).
    :param norm_eps: Added to ``||g_w*||`` in the denominator of ``λ``, for stability when the
        convex hull of the rows contains the origin.

    >>> import torch
    >>> from torchjd.aggregation import CAGradWeighting
    >>> CAGradWeighting(c=0.5)(torch.tensor([[1., 0.], [0., 1.]]))
    tensor([0.7500, 0.7500])
    """

    c = Hyperparameter(real_in(0.0))
    norm_eps = Hyperparameter(real_in(0.0))

    def __init__(self, c: float, norm_eps: float = 0.0001):
        super().__init__()
        self.c = c
        self.norm_eps = norm_eps

    def extra_repr(self) -> str:
        return f"c={self.c}, norm_eps={self.norm_eps}"

    @torch.no_grad()
    def forward(self, stat: Tensor, /) -> Tensor:
        gramian = stat
        m = gramian.shape[0]
        uniform = torch.full((m,), 1.0 / m, dtype=gramian.dtype, device=gramian.device)
        mean_norm = torch.sqrt((uniform @ gramian @ uniform).clamp(min=0.0))  # ||g_0||
        trace = torch.trace(gramian)
        if self.c == 0.0 or float(trace) <= 0.0:
            return uniform

        normalized = gramian / trace
        linear = normalized @ uniform  # gradient of g_w · g_0 (normalized)
        radius = self.c * torch.sqrt((uniform @ linear).clamp(min=0.0))  # sqrt(φ) (normalized)
        tiny = torch.finfo(gramian.dtype).tiny

        def objective_and_gradient(w: Tensor) -> tuple[Tensor, Tensor]:
            gw_norm = torch.sqrt((w @ normalized @ w).clamp(min=0.0))
            value = w @ linear + radius * gw_norm
            gradient = linear + radius * (normalized @ w) / gw_norm.clamp(min=tiny)
            return value, gradient

        weights = uniform
        step = torch.ones((), dtype=gramian.dtype, device=gramian.device)
        tolerance = _TOLERANCE_FACTOR * torch.finfo(gramian.dtype).eps
        value, gradient = objective_and_gradient(weights)
        for _ in range(_MAX_ITERS):
            for _ in range(_MAX_BACKTRACKS):
                candidate = _project_onto_simplex(weights - step * gradient)
                move = candidate - weights
                candidate_value, candidate_gradient = objective_and_gradient(candidate)
                bound = value + gradient @ move + (move @ move) / (2.0 * step)
                if bool(candidate_value <= bound + tolerance * value.abs()):
                    break
                step = step / 2.0
            if bool(candidate_value > value):  # no progress left at this precision
                break
            weights, value, gradient = candidate, candidate_value, candidate_gradient
            if float(move.abs().sum()) <= tolerance:
                break
            step = step * 2.0

        gw_norm = torch.sqrt((weights @ gramian @ weights).clamp(min=0.0))
        scale = self.c * mean_norm / (gw_norm + self.norm_eps)  # λ
        return uniform + scale * weights


class CAGrad(GramianWeightedAggregator):
    """
    Aggregates the rows with CAGrad: within the ball of radius ``c ||g_0||`` around the mean row
    ``g_0``, the direction that maximizes the smallest improvement ``min_i g_i · d``.

    See :class:`CAGradWeighting` for the solver.

    :param c: The radius of the ball around ``g_0``, relative to ``||g_0||`` (paper default 0.5).
    :param norm_eps: Added to ``||g_w*||`` in the denominator of ``λ``, for stability.

    >>> import torch
    >>> from torchjd.aggregation import CAGrad
    >>> A = CAGrad(c=0.5)
    >>> A
    CAGrad(c=0.5, norm_eps=0.0001)
    >>> A(torch.tensor([[1., 0.], [0., 1.]]))
    tensor([0.7500, 0.7500])
    """

    c = Delegated()
    norm_eps = Delegated()

    def __init__(self, c: float, norm_eps: float = 0.0001):
        super().__init__(CAGradWeighting(c=c, norm_eps=norm_eps))

    def extra_repr(self) -> str:
        return self.gramian_weighting.extra_repr()
