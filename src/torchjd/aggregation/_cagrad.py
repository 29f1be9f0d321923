"""
CAGrad: the direction closest to the mean gradient that best improves the worst objective.

From `Conflict-Averse Gradient Descent for Multi-task Learning <https://arxiv.org/abs/2110.14048>`_
(Liu et al., NeurIPS 2021). With ``g_0 = (1/m) Σ_i g_i`` the mean row, the primal problem is

``max_d min_i g_i · d`` subject to ``||d - g_0|| ≤ c ||g_0||``,

solved through its dual on the simplex ``Δ_m``: with ``g_w = Σ_i w_i g_i`` and ``φ = c² ||g_0||²``,

``w* = argmin_{w ∈ Δ_m} g_w · g_0 + sqrt(φ) ||g_w||``, and ``d* = g_0 + sqrt(φ) / ||g_w*|| g_w*``.

Everything only needs the Gramian ``G = J J^T``: ``g_w · g_0 = w^T G 1 / m``,
``||g_w||² = w^T G w`` and ``||g_0||² = 1^T G 1 / m²``. The weights of ``d*`` are
``1/m + λ w*`` with ``λ = c ||g_0|| / ||g_w*||``. Following the paper, ``d*`` is not rescaled (the
authors' code optionally divides it by ``1 + c²``). Everything is computed relative to the scale of
``G``, so ``CAGrad(s J) = s CAGrad(J)`` for ``s > 0``.
"""

import torch
from torch import Tensor

from ._aggregator_bases import GramianWeightedAggregator
from ._checks import Delegated, Hyperparameter, real_in
from ._weighting_bases import GramianWeighting

_MAX_ITERS = 1000
_MAX_BACKTRACKS = 60
_TOLERANCE_FACTOR = 64  # stop when an iteration moves w by less than this many eps (L1)
_SUPPORT_FACTOR = 1024  # weights below this many eps (relative to the largest) start outside
_RESIDUAL_FACTOR = 1024  # the support's linear system must hold to this many eps
_NOISE_FACTOR = 4  # times sqrt(eps): the precision of ||g_w|| computed from a rounded Gramian
_KKT_FACTOR = 1024  # a row outside the support may fall below μ by this many eps


def _project_onto_simplex(vector: Tensor) -> Tensor:
    """Euclidean projection of ``vector`` ``[m]`` onto the probability simplex (sort-based)."""
    sorted_values, _ = torch.sort(vector, descending=True)
    shifted_cumsum = torch.cumsum(sorted_values, dim=0) - 1.0
    counts = torch.arange(1, vector.shape[0] + 1, dtype=vector.dtype, device=vector.device)
    is_support = sorted_values - shifted_cumsum / counts > 0
    support_size = is_support.sum()  # at least 1: the first entry always qualifies
    threshold = shifted_cumsum[support_size - 1] / support_size.to(vector.dtype)
    return (vector - threshold).clamp(min=0.0)


def _solve_on_support(
    gramian: Tensor, linear: Tensor, radius: Tensor, support: Tensor
) -> tuple[Tensor, Tensor] | None:
    """
    Solves the dual's optimality conditions with ``w`` supported on ``support`` (a boolean ``[m]``):
    every row of the support gets the same improvement ``μ = g_i · d*``. With ``v = w / ||g_w||``,
    they read ``G_SS v = (μ 1 - b_S) / r`` and ``v^T G_SS v = 1`` (``b = G 1 / m``, ``r = c
    ||g_0||``), a quadratic equation in ``μ``. Returns ``(w, μ)``, or ``None`` when the support
    admits no solution.
    """
    indices = torch.nonzero(support).flatten()
    sub_gramian = gramian[indices][:, indices]
    sub_linear = linear[indices]
    inverse = torch.linalg.pinv(sub_gramian, hermitian=True)
    ones = torch.ones_like(sub_linear)
    a = ones @ inverse @ ones
    b = ones @ inverse @ sub_linear
    c = sub_linear @ inverse @ sub_linear - radius**2
    discriminant = b**2 - a * c
    if not bool(a > 0) or not bool(discriminant >= 0):
        return None
    mu = (b + torch.sqrt(discriminant)) / a
    v = inverse @ (mu * ones - sub_linear) / radius
    # The pseudo-inverse solves G_SS v = (μ 1 - b_S) / r only if the right side is in its range.
    residual = sub_gramian @ v - (mu * ones - sub_linear) / radius
    scale = (mu.abs() + sub_linear.abs().max()) / radius
    if not bool(residual.abs().max() <= _RESIDUAL_FACTOR * torch.finfo(gramian.dtype).eps * scale):
        return None
    total = v.sum()
    if not bool(total > 0):
        return None
    weights = torch.zeros_like(linear)
    weights[indices] = v / total
    return weights, mu


class CAGradWeighting(GramianWeighting):
    """
    Weights ``1/m + λ w*`` of CAGrad, computed from the Gramian ``G`` ``[m, m]``.

    The dual ``min_{w ∈ Δ_m} w^T G 1 / m + c ||g_0|| sqrt(w^T G w)`` is convex. It is solved on
    ``G`` normalized by its trace (so that the answer is exactly scale-covariant): projected
    gradient descent with backtracking finds the support of ``w*``, then ``w*`` is solved exactly
    from the optimality conditions on that support (every row of the support gets the same
    improvement ``g_i · d*``, the others at least as much), adding or dropping rows until they all
    hold. Runs under ``torch.no_grad()``.

    When ``||g_w*||`` is at most ``norm_eps · ||g_0||`` (or below the precision
    ``4 sqrt(eps · trace(G))`` at which a Gramian rounded in its dtype knows it), the convex hull
    of the rows contains the origin (up to that relative tolerance) and the direction
    ``g_w* / ||g_w*||`` is undefined: then the primal optimum is taken directly, ``d* = 0`` for
    ``c >= 1`` (it lies in the ball and conflicts with no row) and ``d* = g_0`` for ``c < 1``.

    The ``[m, m]`` problem is solved in float64 (where the device has it) and the weights are
    returned in the Gramian's dtype: near the degenerate case ``λ`` is large and amplifies any
    error in ``w*``.

    :param c: The radius of the ball around ``g_0``, relative to ``||g_0||``; ``c = 0`` gives the
        mean. The paper's default is ``0.5`` (its convergence guarantee needs ``c < 1``). With
        ``c >= 1`` the ball contains the origin, so the result never conflicts with a row.
    :param norm_eps: The relative threshold on ``||g_w*|| / ||g_0||`` below which the origin counts
        as being in the convex hull of the rows.

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
        # The dual is ill-conditioned when the convex hull of the rows nearly contains the origin
        # (``λ`` is then large and amplifies any error in ``w*``), so the small ``[m, m]`` problem
        # is solved in float64 wherever the device has it.
        # A norm ||g_w|| computed from a Gramian with rounding errors eps ||G|| is only known to
        # about sqrt(eps ||G||): below that, it counts as zero.
        noise_floor = _NOISE_FACTOR * torch.finfo(stat.dtype).eps ** 0.5
        if stat.dtype != torch.float64 and stat.device.type != "mps":
            return self._weights(stat.double(), noise_floor).to(stat.dtype)
        return self._weights(stat, noise_floor)

    def _weights(self, gramian: Tensor, noise_floor: float) -> Tensor:
        m = gramian.shape[0]
        uniform = torch.full((m,), 1.0 / m, dtype=gramian.dtype, device=gramian.device)
        trace = torch.trace(gramian)
        if self.c == 0.0 or not bool(trace > 0.0):
            return uniform

        normalized = gramian / trace
        linear = normalized @ uniform  # b = G 1 / m, the gradient of g_w · g_0 (normalized)
        mean_norm = torch.sqrt((uniform @ linear).clamp(min=0.0))  # ||g_0|| (normalized)
        radius = self.c * mean_norm  # r = c ||g_0|| (normalized)
        if not bool(radius > 0.0):
            return uniform

        weights = self._minimize_dual(normalized, linear, radius)
        gw_norm = torch.sqrt((weights @ normalized @ weights).clamp(min=0.0))
        if bool(gw_norm <= max(self.norm_eps * mean_norm, noise_floor)):  # normalized: ||G|| = 1
            return torch.zeros_like(uniform) if self.c >= 1.0 else uniform
        return uniform + (radius / gw_norm) * weights  # λ = c ||g_0|| / ||g_w*||

    def _minimize_dual(self, gramian: Tensor, linear: Tensor, radius: Tensor) -> Tensor:
        m = gramian.shape[0]
        eps = torch.finfo(gramian.dtype).eps
        tiny = torch.finfo(gramian.dtype).tiny

        def objective_and_gradient(w: Tensor) -> tuple[Tensor, Tensor]:
            gw_norm = torch.sqrt((w @ gramian @ w).clamp(min=0.0))
            value = w @ linear + radius * gw_norm
            gradient = linear + radius * (gramian @ w) / gw_norm.clamp(min=tiny)
            return value, gradient

        weights = torch.full((m,), 1.0 / m, dtype=gramian.dtype, device=gramian.device)
        step = torch.ones((), dtype=gramian.dtype, device=gramian.device)
        tolerance = _TOLERANCE_FACTOR * eps
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
            if not bool(candidate_value <= value):  # no progress left at this precision
                break
            weights, value, gradient = candidate, candidate_value, candidate_gradient
            if float(move.abs().sum()) <= tolerance:
                break
            step = step * 2.0

        return self._polish(gramian, linear, radius, weights, value)

    @staticmethod
    def _polish(
        gramian: Tensor, linear: Tensor, radius: Tensor, weights: Tensor, value: Tensor
    ) -> Tensor:
        """
        Solves the optimality conditions exactly, starting from the support of the approximate
        ``weights``; returns ``weights`` unchanged if no support passes within ``2 m`` changes.
        """
        m = gramian.shape[0]
        eps = torch.finfo(gramian.dtype).eps
        support = weights > _SUPPORT_FACTOR * eps * weights.max()
        seen = set()
        for _ in range(2 * m + 1):
            key = tuple(support.tolist())
            if key in seen:
                break
            seen.add(key)
            solution = _solve_on_support(gramian, linear, radius, support)
            if solution is None:
                break
            candidate, mu = solution
            if bool(candidate.min() < 0):  # drop the most negative row from the support
                support = support.clone()
                support[torch.argmin(candidate)] = False
                continue
            # The improvements g_j · d* of every row, with d* = g_0 + r g_w / ||g_w||.
            gw_norm = torch.sqrt((candidate @ gramian @ candidate).clamp(min=0.0))
            if not bool(gw_norm > 0):
                break
            improvements = linear + radius * (gramian @ candidate) / gw_norm
            scale = linear.abs().max() + radius * torch.sqrt(torch.diagonal(gramian).max())
            violation = mu - improvements
            violation[support] = 0.0
            if bool(violation.max() > _KKT_FACTOR * eps * scale):  # a row outside is below μ
                support = support.clone()
                support[torch.argmax(violation)] = True
                continue
            return candidate
        return weights


class CAGrad(GramianWeightedAggregator):
    """
    Aggregates the rows with CAGrad: within the ball of radius ``c ||g_0||`` around the mean row
    ``g_0``, the direction that maximizes the smallest improvement ``min_i g_i · d``.

    See :class:`CAGradWeighting` for the solver.

    :param c: The radius of the ball around ``g_0``, relative to ``||g_0||`` (paper default 0.5).
    :param norm_eps: The relative threshold on ``||g_w*|| / ||g_0||`` below which the origin counts
        as being in the convex hull of the rows (see :class:`CAGradWeighting`).

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
