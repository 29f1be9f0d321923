"""
MGDA: the minimum-norm point of the convex hull of the rows.

From `Multiple-gradient descent algorithm (MGDA) for multiobjective optimization
<https://doi.org/10.1016/j.crma.2012.03.014>`_ (Désidéri, Comptes Rendus Mathématique 2012). The
aggregation is ``J^T w*`` with

``w* = argmin_{w ∈ Δ_m} w^T G w``, ``G = J J^T``, ``Δ_m`` the probability simplex.

Solved exactly, not by Frank-Wolfe iterations. With the rows lifted to ``(g_i, -√c)`` (Gramian
``H = G + c 1 1^T``, any ``c > 0``; we take the mean diagonal of ``G`` over ``m``, which keeps the
rank-one term at the scale of ``G``), the problem becomes

``μ* = argmin_{μ ≥ 0} ½ μ^T H μ - 1^T μ``, and ``w* = μ* / Σ_i μ*_i``

(the minimum over ``μ = t w`` is at ``t = 1 / (w^T G w + c)``, decreasing in ``w^T G w``). Unlike
the simplex problem, this one is a non-negative least-squares problem, whose optimality
conditions (``μ ≥ 0``, ``Hμ ≥ 1``, ``μ_i (Hμ - 1)_i = 0``) translate to those of the weights:
``(G w)_j - w^T G w = ((Hμ)_j - 1) / Σμ``. The solver stops when they hold to ``τ max_i G_ii``
(``τ`` about ``1.8e-12`` for a float64 Gramian, ``1.2e-7`` for a float32 one), computed in
float64:

1. The full support first: when no row is dominated, ``μ* = H^{-1} 1 > 0``. It is solved by a
   Cholesky factorization up to 64 rows, above by Jacobi-preconditioned conjugate gradients (from
   ``H``'s right-hand side ``1``, a few O(m²) products instead of an O(m³) factorization), which
   stop as soon as the residual passes the optimality test and give up early when an iterate is
   clearly negative somewhere.
2. Otherwise, the Lawson-Hanson active-set method from the empty support: add the most violated
   row, solve on the support, and after an overshoot step back and drop a row. The inverse of
   ``H`` on the support is bordered by one row per addition, so each step is a few O(m k)
   products. It only decreases the objective, so it terminates; the solution has at most
   ``rank(G) + 1`` rows, which is what makes it cheap on low-rank Gramians and when the hull
   contains the origin. When the support grows past ``max(64, m / 4)`` rows (and each time it
   doubles), a few steps of block principal pivoting (Júdice and Pires 1994) from the violated
   rows jump to a larger support, kept when its factorizations are well conditioned.

Up to 8 rows on the CPU, the Lawson-Hanson method runs on Python floats (cheaper than torch's
dispatch), and ``m = 2`` has a closed form.
"""

import math

import torch
from torch import Tensor

from ._aggregator_bases import GramianWeightedAggregator
from ._checks import Delegated, Hyperparameter, int_at_least, real_in
from ._input_policy import is_finite
from ._weighting_bases import GramianWeighting

# Up to this many rows on the CPU, the solver runs on Python floats: each torch operation costs a
# few microseconds of dispatch, more than all the arithmetic of such a small problem.
_PYTHON_FLOATS_UP_TO = 8
# Up to this many rows, the full-support guess is solved by a Cholesky factorization; above, by
# conjugate gradients, a few O(m²) steps instead of an O(m³) factorization when the rows are far
# from parallel (the common case).
_FACTORIZATION_UP_TO = 64
_CG_MAX_STEPS = 30
# Conjugate gradients give up on the full support once, after a few steps, an entry is this
# negative relative to the largest: the full support is then almost surely not optimal.
_CG_GIVE_UP_RATIO = 0.05
_CG_GIVE_UP_FROM = 4
# A row whose lifted vector has a squared distance to the span of the support's below this fraction
# of its squared norm depends on them: adding it cannot lower the objective.
_DEPENDENCE = 1e-13
_INITIAL_SUPPORT_CAPACITY = 32
_EPS64 = torch.finfo(torch.float64).eps
# When the active set reaches max(_RESTART_FROM, m // 4) rows, then twice as many and so on, it
# tries a few block pivoting steps (see _Support.restart), kept if the Cholesky pivots of the
# blocks, relative to their diagonal, stay above _RESTART_PIVOT (rows far from dependent).
_RESTART_FROM = 64
_RESTART_PIVOT = 1e-6
_RESTART_ROUNDS = 8


def _two_row_weights(gramian: Tensor) -> Tensor:
    """Closed form for ``m = 2``: the minimum of ``|t g_1 + (1 - t) g_2|²`` over ``t ∈ [0, 1]``."""
    if gramian.device.type == "cpu":
        (g11, g12), (_, g22) = gramian.tolist()
        curvature = g11 + g22 - 2.0 * g12  # |g_1 - g_2|²
        t = 0.5 if not curvature > 0.0 else min(max((g22 - g12) / curvature, 0.0), 1.0)
        return torch.tensor([t, 1.0 - t], dtype=gramian.dtype)
    g11, g22, g12 = gramian[0, 0], gramian[1, 1], gramian[0, 1]
    curvature = g11 + g22 - 2.0 * g12
    safe_curvature = torch.where(curvature > 0, curvature, torch.ones_like(curvature))
    t = torch.where(curvature > 0, ((g22 - g12) / safe_curvature).clamp(0.0, 1.0), 0.5)
    return torch.stack([t, 1.0 - t])


def factor_and_solve(matrix: Tensor, rhs: Tensor) -> Tensor:
    """
    Returns a solution of ``matrix x = rhs`` for a PSD ``matrix`` whose range contains ``rhs``, by
    a Cholesky factorization.
    """
    k = matrix.shape[0]
    ones = rhs.unsqueeze(1)
    eye = torch.eye(k, dtype=matrix.dtype, device=matrix.device)
    # A ridge at rounding level makes a singular matrix (repeated rows, more rows than columns)
    # factorizable and picks the solution of smallest norm (1 is in the range of the matrix).
    ridge = 4.0 * k * torch.finfo(matrix.dtype).eps
    for _ in range(8):
        factor, info = torch.linalg.cholesky_ex(matrix + ridge * eye)
        if not bool(info > 0):
            return torch.cholesky_solve(ones, factor).squeeze(1)
        ridge *= 100.0
    # Not reachable for a PSD matrix in practice; the pseudo-inverse solution is as good.
    return torch.linalg.lstsq(matrix, ones, driver="gelsd").solution.squeeze(1)


def _cholesky_factor(matrix: Tensor) -> Tensor:
    """
    Returns the Cholesky factor of a PSD ``matrix`` plus a ridge at rounding level (relative to its
    diagonal), increased until the factorization succeeds.
    """
    k = matrix.shape[0]
    eye = torch.eye(k, dtype=matrix.dtype, device=matrix.device)
    # The ridge makes a singular matrix (repeated rows, more rows than columns) factorizable and
    # picks nearly the solution of smallest norm.
    ridge = 4.0 * k * torch.finfo(matrix.dtype).eps * float(matrix.diagonal().max())
    while True:
        factor, info = torch.linalg.cholesky_ex(matrix + ridge * eye)
        if not bool(info > 0):
            return factor
        ridge *= 100.0


def solve_nonnegative_qp(matrix: Tensor, vector: Tensor, max_iters: int) -> Tensor:
    """
    Returns ``argmin_{x ≥ 0} ½ x^T A x + b^T x`` for a PSD ``A`` ``[k, k]`` (``b`` in the range of
    ``A`` on every subset, so that the minimum is attained), by the Lawson-Hanson active-set
    method: it only ever decreases the objective, so it terminates, after about as many outer
    steps as the solution has positive entries.
    """
    k = vector.shape[0]
    x = torch.zeros_like(vector)
    free = torch.zeros(k, dtype=torch.bool, device=vector.device)
    tolerance = torch.finfo(vector.dtype).eps ** 0.5 * max(1.0, float(vector.abs().max()))
    for _ in range(max_iters):
        gradient = matrix @ x + vector
        candidates = ~free & (gradient < -tolerance)
        if not bool(candidates.any()):
            break
        free[torch.where(candidates, gradient, torch.inf).argmin()] = True
        for _ in range(k + 1):
            indices = free.nonzero().squeeze(1)
            z = torch.zeros_like(vector)
            z[indices] = factor_and_solve(matrix[indices][:, indices], -vector[indices])
            if bool((z[indices] > 0).all()):
                x = z
                break
            # Move towards z until a free coordinate reaches 0, and fix it there.
            blocking = free & (z <= 0)
            ratios = x[blocking] / (x[blocking] - z[blocking])
            x = x + ratios.min() * (z - x)
            free[blocking.nonzero().squeeze(1)[ratios.argmin()]] = False
            free &= x > 0
            x = torch.where(free, x, torch.zeros_like(x))
    return x


def _python_cholesky_solve(lifted: list[list[float]], support: list[int]) -> list[float] | None:
    """
    Returns ``z`` with ``H_SS z = 1`` on the support ``S``, or ``None`` when a pivot of the
    Cholesky factorization of ``H_SS`` is not positive (a row of the support depends on the
    others).
    """
    k = len(support)
    factor = [[0.0] * k for _ in range(k)]
    for a in range(k):
        row = lifted[support[a]]
        factor_a = factor[a]
        for b in range(a + 1):
            factor_b = factor[b]
            value = row[support[b]] - sum(factor_a[t] * factor_b[t] for t in range(b))
            if a == b:
                if not value > _DEPENDENCE * row[support[a]]:
                    return None
                factor_a[a] = math.sqrt(value)
            else:
                factor_a[b] = value / factor_b[b]
    forward = [0.0] * k
    for a in range(k):
        forward[a] = (1.0 - sum(factor[a][t] * forward[t] for t in range(a))) / factor[a][a]
    solution = [0.0] * k
    for a in reversed(range(k)):
        value = forward[a] - sum(factor[t][a] * solution[t] for t in range(a + 1, k))
        solution[a] = value / factor[a][a]
    return solution


def _python_active_set(
    lifted: list[list[float]], tolerance: float, max_removals: int
) -> tuple[list[int], list[float]]:
    """
    The Lawson-Hanson method of :func:`_active_set_multipliers` on Python floats, refactoring the
    (small) support at each step. Returns the support and the multipliers on it.
    """
    m = len(lifted)
    inverse_roots = [1.0 / math.sqrt(lifted[i][i]) for i in range(m)]
    support: list[int] = []
    values: list[float] = []
    skipped: set[int] = set()
    removals = 0
    while True:
        threshold = tolerance * sum(values)
        best, best_score = -1, 0.0
        for i in range(m):
            if i in skipped or i in support:
                continue
            slack = 1.0 - sum(lifted[i][j] * v for j, v in zip(support, values))
            if slack > threshold and slack * inverse_roots[i] > best_score:
                best, best_score = i, slack * inverse_roots[i]
        if best < 0:
            return support, values
        trial = support + [best]
        solution = _python_cholesky_solve(lifted, trial)
        if solution is None:
            skipped.add(best)
            continue
        current = values + [0.0]
        first_round = True
        while min(solution) <= 0.0:
            if removals == max_removals:
                return support, values
            removals += 1
            skipped.clear()
            # Move towards the solution until a coordinate reaches 0, and drop it.
            alpha, blocking = min(
                (c / (c - s) if c > 0.0 else 0.0, p)
                for p, (c, s) in enumerate(zip(current, solution))
                if s <= 0.0
            )
            if first_round and blocking == len(support) and alpha == 0.0:
                skipped.add(best)  # it leaves at once (rounding): do not retry it
            first_round = False
            current = [c + alpha * (s - c) for c, s in zip(current, solution)]
            kept = [p for p, c in enumerate(current) if c > 0.0 and p != blocking]
            trial = [trial[p] for p in kept]
            current = [current[p] for p in kept]
            solution = _python_cholesky_solve(lifted, trial) if trial else []
            if solution is None:  # not reachable: a subset of independent rows is independent
                solution = current
            if not solution:
                break
        support, values = trial, solution


def _python_min_norm_weights(
    gramian: list[list[float]], scale: float, tolerance: float, max_removals: int
) -> list[float]:
    m = len(gramian)
    shift = sum(gramian[i][i] for i in range(m)) / m**2
    lifted = [[value + shift for value in row] for row in gramian]
    support, values = _python_active_set(lifted, tolerance * scale, max_removals)
    total = sum(values)
    weights = [0.0] * m
    for i, value in zip(support, values):
        weights[i] = value / total
    return weights


def _residual_is_small(lifted: Tensor, multipliers: Tensor, tolerance: float) -> bool:
    """
    Whether ``|1 - Hμ|`` is small enough for the KKT test of the weights ``μ / Σμ`` (when ``μ`` is
    positive).
    """
    residual = torch.addmv(torch.ones_like(multipliers), lifted, multipliers, alpha=-1.0)
    bound = 0.5 * tolerance * float(multipliers.sum())
    return float(torch.linalg.vector_norm(residual, float("inf"))) <= bound


def _conjugate_gradient(lifted: Tensor, tolerance: float) -> Tensor | None:
    """
    Returns the solution of ``H μ = 1`` by Jacobi-preconditioned conjugate gradients from 0 when it
    is positive and they reach it within ``_CG_MAX_STEPS`` steps, else ``None`` (early, when an
    iterate is clearly negative somewhere).
    """
    m = lifted.shape[0]
    inverse_diagonal = lifted.diagonal().reciprocal()
    largest_diagonal = float(lifted.diagonal().max())
    x = torch.zeros_like(inverse_diagonal)
    residual = torch.ones_like(inverse_diagonal)
    direction = inverse_diagonal
    rho = float(direction.sum())  # r^T D^{-1} r with r = 1
    # From 0 with right-hand side 1: 1^T p_i = rho_i and Σx grows at each step (Σx_k = x_k^T H x_k),
    # so the running sum of alpha_i rho_i tracks Σx with no reduction.
    total = 0.0
    for step in range(1, _CG_MAX_STEPS + 1):
        product = lifted.mv(direction)
        alpha = rho / float(direction.dot(product))
        total += alpha * rho
        x.add_(direction, alpha=alpha)
        residual.add_(product, alpha=-alpha)
        preconditioned = inverse_diagonal * residual
        rho, previous_rho = float(residual.dot(preconditioned)), rho
        # |r_i| <= sqrt(rho D_ii) bounds the recursive residual with no reduction.
        bound = 0.5 * tolerance * total
        if (rho * largest_diagonal) ** 0.5 <= 8.0 * bound:
            recursive = float(residual.abs().max())
            # The recursive residual drifts from the true one by rounding, at most about
            # steps * m * eps * max|H_ij| * Σ|x| (and |H_ij| <= max_i H_ii for a PSD H): when that
            # is far below the test, the true residual need not be computed.
            drift = 4.0 * step * m * _EPS64 * largest_diagonal * total
            if recursive + drift <= 0.5 * tolerance * float(x.sum()) or (
                recursive <= bound and _residual_is_small(lifted, x, tolerance)
            ):
                return x if float(x.min()) > 0.0 else None
        if step >= _CG_GIVE_UP_FROM and step % 2 == 0:
            if float(x.min()) < -_CG_GIVE_UP_RATIO * float(x.max()):
                return None
        direction = torch.add(preconditioned, direction, alpha=rho / previous_rho)
    return None


def _full_support_multipliers(lifted: Tensor, tolerance: float) -> Tensor | None:
    """Returns ``H^{-1} 1`` when it is positive, hence the solution, else ``None``."""
    if lifted.shape[0] > _FACTORIZATION_UP_TO:
        return _conjugate_gradient(lifted, tolerance)
    ones = torch.ones_like(lifted[:, :1])
    multipliers = torch.cholesky_solve(ones, _cholesky_factor(lifted)).squeeze(1)
    if float(multipliers.min()) > 0.0 and _residual_is_small(lifted, multipliers, tolerance):
        return multipliers
    return None


class _Support:
    """
    The support ``S`` of the Lawson-Hanson method on ``H``: the inverse of ``H_SS``, the rows of
    ``H`` on ``S`` and the multipliers ``μ_S``, in the order in which the rows entered, in buffers
    that are zero beyond ``k = |S|``. The buffers grow with the support (the support is usually
    much smaller than ``m``, and allocating ``[m, m]`` buffers would cost more than the solve).
    """

    def __init__(self, lifted: Tensor):
        self.lifted = lifted
        self.indices: list[int] = []
        self.diagonal = lifted.diagonal().tolist()
        self.inverse, self.rows, self.values = lifted[:0, :0], lifted[:0], lifted[0, :0]
        self._allocate(min(lifted.shape[0], _INITIAL_SUPPORT_CAPACITY))

    def _allocate(self, capacity: int) -> None:
        k = len(self.indices)
        inverse, rows, values = self.inverse[:k, :k], self.rows[:k], self.values[:k]
        # Products run on the whole buffers, whose zeros beyond k cost less than slicing them.
        self.inverse = self.lifted.new_zeros(capacity, capacity)  # [:k, :k]: H_SS^{-1}
        self.rows = self.lifted.new_zeros(capacity, self.lifted.shape[0])  # [:k]: H_S
        self.rows_transposed = self.rows.T
        self.values = self.lifted.new_zeros(capacity)  # [:k]: μ_S
        self.border = self.lifted.new_zeros(capacity)  # [:k + 1]: (H_SS^{-1} H_Sj, -1)
        self.inverse[:k, :k] = inverse
        self.rows[:k] = rows
        self.values[:k] = values

    def candidate(self, index: int) -> float:
        """
        Returns the squared distance ``H_jj - H_jS H_SS^{-1} H_Sj`` of the lifted row ``j`` to the
        span of the support's, and keeps ``H_SS^{-1} H_Sj`` for :meth:`add`.
        """
        k = len(self.indices)
        if k == self.values.shape[0]:
            self._allocate(min(self.lifted.shape[0], 2 * k))
        column = self.rows[:, index]  # H_Sj, then zeros
        torch.mv(self.inverse, column, out=self.border)  # H_SS^{-1} H_Sj, then zeros
        self.border[k] = -1.0
        return self.diagonal[index] - float(column.dot(self.border))

    def add(self, index: int, slack: float, distance: float) -> Tensor:
        """
        Adds the row of the last :meth:`candidate` call, when ``μ_S`` solves ``H_SS μ_S = 1``: with
        ``v = (H_SS^{-1} H_Sj, -1)``, the new inverse is the old one plus ``v v^T / distance`` and
        the new solution is ``(μ_S, 0) - t v`` with ``t = (1 - Hμ)_j / distance``. Returns the new
        ``μ_S``.
        """
        k = len(self.indices)
        self.inverse.addr_(self.border, self.border, alpha=1.0 / distance)
        self.values.add_(self.border, alpha=-slack / distance)
        self.rows[k] = self.lifted[index]
        self.indices.append(index)
        return self.values[: k + 1]

    def previous_values(self, slack: float, distance: float) -> Tensor:
        """Returns the multipliers before the last :meth:`add`, with 0 for the row it added."""
        k = len(self.indices)
        return self.values[:k] + (slack / distance) * self.border[:k]

    def keep(self, positions: Tensor, values: Tensor) -> None:
        """Keeps the rows at ``positions`` (increasing), with these multipliers."""
        k = len(self.indices)
        dropped = torch.ones(k, dtype=torch.bool, device=positions.device)
        dropped[positions] = False
        dropped = dropped.nonzero().squeeze(1)
        inverse = self.inverse[:k, :k]
        # The inverse of a principal block from the whole inverse: B_KK - B_KD B_DD^{-1} B_DK.
        kept_dropped = inverse[positions][:, dropped]
        correction = kept_dropped @ torch.linalg.solve(inverse[dropped][:, dropped], kept_dropped.T)
        new_inverse = inverse[positions][:, positions] - correction
        kept_rows = self.rows[positions]
        k = len(positions)
        self.inverse.zero_()
        self.inverse[:k, :k] = new_inverse
        self.rows.zero_()
        self.rows[:k] = kept_rows
        self.values.zero_()
        self.values[:k] = values
        self.indices = [self.indices[p] for p in positions.tolist()]

    def restart(self, indices: Tensor, tolerance: float) -> bool:
        """
        Replaces the support by a set on which ``μ_S = H_SS^{-1} 1 > 0``, found by a few steps of
        block principal pivoting from ``indices``: solve on the set (a Cholesky factorization),
        drop the rows where the solution is not positive and add those that violate the conditions
        by more than ``tolerance Σμ``, at once. Stops at the first violation-free set, or when a
        factorization is not well conditioned (dependent rows) or after ``_RESTART_ROUNDS`` steps;
        keeps the last set whose solution is positive. Returns whether it changed the support.
        """
        m = self.lifted.shape[0]
        best = None
        for _ in range(_RESTART_ROUNDS):
            if indices.shape[0] == 0:
                break
            block = self.lifted[indices][:, indices]
            factor, info = torch.linalg.cholesky_ex(block)
            if bool(info > 0):
                break  # a singular block: the rows are dependent
            if not float((factor.diagonal() ** 2 / block.diagonal()).min()) > _RESTART_PIVOT:
                break
            solution = torch.cholesky_solve(torch.ones_like(block[:, :1]), factor).squeeze(1)
            slacks = torch.addmv(
                torch.ones_like(self.lifted[0]), self.lifted[:, indices], solution, alpha=-1.0
            )
            outside = torch.ones(m, dtype=torch.bool, device=indices.device)
            outside[indices] = False
            violating = outside & (slacks > tolerance * float(solution.sum()))
            positive = solution > 0.0
            all_positive = bool(positive.all())
            if all_positive:
                best = (indices, factor, solution)
                if not bool(violating.any()):
                    break
            indices = torch.cat([indices[positive], violating.nonzero().squeeze(1)])
        if best is None:
            return False
        indices, factor, solution = best
        k = indices.shape[0]
        if k > self.values.shape[0]:
            self.indices = []
            self._allocate(min(m, 2 * k))
        self.inverse.zero_()
        self.inverse[:k, :k] = torch.cholesky_inverse(factor)
        self.rows.zero_()
        self.rows[:k] = self.lifted[indices]
        self.values.zero_()
        self.values[:k] = solution
        self.indices = indices.tolist()
        return True

    def solve(self) -> Tensor:
        """Returns ``H_SS^{-1} 1``."""
        k = len(self.indices)
        return self.inverse[:k, :k].sum(dim=1)


def _active_set_multipliers(lifted: Tensor, tolerance: float, max_removals: int) -> Tensor:
    """
    Returns ``argmin_{μ ≥ 0} ½ μ^T H μ - 1^T μ`` by the Lawson-Hanson active-set method: from the
    empty support ``S``, add the row of largest violation ``(1 - Hμ)_j`` (scaled by ``1 / √H_jj``),
    solve ``H_SS μ_S = 1``, and when that solution has a non-positive entry, move towards it until
    an entry reaches zero and drop that row. It stops when no row violates by more than
    ``tolerance Σμ`` (the KKT test of the weights) or after ``max_removals`` removal steps.

    The inverse of ``H_SS`` is kept up to date (bordered by one row per addition), so that each
    step costs a few O(m k) products instead of a factorization. When the support grows large, a
    few block principal pivoting steps (:meth:`_Support.restart`) replace many single additions.
    """
    diagonal = lifted.diagonal()
    diagonal_list = diagonal.tolist()
    inverse_roots = diagonal.rsqrt()
    ones = torch.ones_like(diagonal)
    score_weights = inverse_roots.clone()  # zero on the skipped rows
    support = _Support(lifted)
    skipped: list[int] = []
    slacks = torch.ones_like(lifted[0])  # 1 - Hμ
    total = 0.0  # Σμ
    removals = 0
    restart_size = max(_RESTART_FROM, lifted.shape[0] // 4)
    while removals <= max_removals:
        threshold = tolerance * total
        index = int((slacks * score_weights).argmax())
        slack = float(slacks[index])
        if not slack > threshold:
            # The best score may hide a larger violation with a smaller score.
            masked = torch.where(score_weights > 0.0, slacks, -torch.inf)
            slack, index = masked.max(dim=0)
            slack, index = float(slack), int(index)
            if not slack > threshold:
                break
        # The rows of the support have slack 0 up to rounding, far below the threshold, so they
        # are not selected; one that rounding makes look violated is skipped.
        distance = 0.0 if index in support.indices else support.candidate(index)
        if not distance > _DEPENDENCE * diagonal_list[index]:
            score_weights[index] = 0.0
            skipped.append(index)  # it cannot lower the objective
            continue
        values = support.add(index, slack, distance)
        k = len(support.indices)
        total += slack**2 / distance  # Σ(μ_S - t u, t) = Σμ_S + t (1 - Σu) and Σu = 1 - slack
        if not float(values.min()) > 0.0:
            current = support.previous_values(slack, distance)
            solution = support.values[:k].clone()
            while True:
                removals += 1
                if removals > max_removals:
                    support.values[:k] = current
                    break
                for i in skipped:
                    score_weights[i] = inverse_roots[i]
                skipped.clear()
                # Move towards the solution until an entry reaches 0, and drop that row.
                gaps = (current - solution).clamp(min=torch.finfo(current.dtype).tiny)
                ratios = torch.where(solution <= 0.0, current / gaps, torch.inf)
                alpha, position = ratios.min(dim=0)
                current = current + alpha * (solution - current)
                kept = current > 0.0
                kept[position] = False
                if support.indices[int(position)] == index and float(alpha) == 0.0:
                    score_weights[index] = 0.0  # it leaves at once (rounding): do not retry it
                    skipped.append(index)
                positions = kept.nonzero().squeeze(1)
                current = current[positions]
                support.keep(positions, current)
                k = len(support.indices)
                solution = support.solve()
                if bool((solution > 0.0).all()):
                    support.values[:k] = solution
                    break
            total = float(support.values.sum())
        slacks = torch.addmv(ones, support.rows_transposed, support.values, alpha=-1.0)
        if len(support.indices) >= restart_size:
            # A large support: rather than adding the rows one by one, pivot by blocks from the
            # rows that violate the conditions or are in the support.
            in_support = torch.zeros_like(slacks, dtype=torch.bool)
            in_support[support.indices] = True
            candidates = (in_support | (slacks > tolerance * total)).nonzero().squeeze(1)
            if support.restart(candidates, tolerance):
                for i in skipped:
                    score_weights[i] = inverse_roots[i]
                skipped.clear()
                k = len(support.indices)
                total = float(support.values.sum())
                slacks = torch.addmv(ones, support.rows_transposed, support.values, alpha=-1.0)
            restart_size = 2 * max(restart_size, len(support.indices))  # at most log2(m) times
    multipliers = torch.zeros_like(lifted[0])
    k = len(support.indices)
    multipliers[support.indices] = support.values[:k].clamp(min=0.0)
    return multipliers


def _relative_tolerance(dtype: torch.dtype) -> float:
    """
    ``eps^{3/4}`` for float64 Gramians, float32's ``eps`` for float32 (and lower) ones: the
    rounding level of the float32 weights that are returned (a tighter target costs active-set
    steps on rank-deficient Gramians, without more accurate float32 weights).
    """
    if dtype == torch.float64:
        return _EPS64**0.75
    return torch.finfo(torch.float32).eps


def min_norm_weights(gramian: Tensor, max_iters: int) -> Tensor:
    """
    Returns ``argmin_{w ∈ Δ_m} w^T G w`` for a finite PSD Gramian ``G`` ``[m, m]`` (see the module
    docstring), with at most ``max_iters`` removal steps of the active-set method.
    """
    m = gramian.shape[0]
    if m == 1:
        return torch.ones(1, dtype=gramian.dtype, device=gramian.device)
    if m == 2:
        return _two_row_weights(gramian)
    scale = float(gramian.diagonal().max())
    if not scale > 0:  # all rows are zero: any weights give the zero vector
        return torch.full((m,), 1.0 / m, dtype=gramian.dtype, device=gramian.device)
    relative_tolerance = _relative_tolerance(gramian.dtype)
    if gramian.device.type == "cpu" and m <= _PYTHON_FLOATS_UP_TO:
        weights = _python_min_norm_weights(gramian.tolist(), scale, relative_tolerance, max_iters)
        return torch.tensor(weights, dtype=gramian.dtype)
    tolerance = relative_tolerance * scale
    # Solved in float64 (the problem is only m x m), lifted by c 1 1^T with c the mean diagonal
    # over m, which keeps the rank-one term's eigenvalue (c m) at the scale of G's.
    lifted = gramian.to(torch.float64, copy=True)
    lifted.add_(float(lifted.diagonal().sum()) / m**2)
    multipliers = _full_support_multipliers(lifted, tolerance)
    if multipliers is None:
        multipliers = _active_set_multipliers(lifted, tolerance, max_iters)
    return (multipliers / multipliers.sum()).to(gramian.dtype)


class MGDAWeighting(GramianWeighting):
    """
    Weights ``w* = argmin_{w ∈ Δ_m} w^T G w`` of the Gramian ``G`` ``[m, m]``, computed exactly.

    The weights are non-negative and sum to one; they satisfy the optimality conditions
    ``(G w*)_i ≥ w*^T G w*`` for every ``i``, with equality where ``w*_i > 0``, up to
    ``τ max_i G_ii`` with ``τ = eps^{3/4} ≈ 1.8e-12`` for a float64 Gramian and ``eps ≈ 1.2e-7``
    for a float32 one (the rounding of the returned weights).
    ``m = 2`` has a closed form. They do not depend on the scale of ``G``, so the aggregation is
    scale-covariant: ``MGDA(s J) = s MGDA(J)`` for ``s > 0``. All-zero rows give uniform weights.
    Runs under ``torch.no_grad()``: the weights are not differentiated through.

    :param epsilon: Kept for compatibility with torchjd 0.18, where it is the step size below which
        the Frank-Wolfe iterations stop early. The exact solver has no step size: it is validated
        (non-negative) and otherwise unused.
    :param max_iters: Maximum number of removal steps of the active-set solver (steps that drop a
        row from its support after overshooting; adding rows takes none of this budget). The exact
        solution usually needs a few or none; when the bound is reached, the current iterate, which
        is non-negative, is returned normalized onto the simplex.

    >>> import torch
    >>> from torchjd.aggregation import MGDAWeighting
    >>> MGDAWeighting()(torch.tensor([[4., 0.], [0., 1.]]))
    tensor([0.2000, 0.8000])
    """

    epsilon = Hyperparameter(real_in(0.0))
    max_iters = Hyperparameter(int_at_least(1))
    # Checked in forward by one sum: the generic check costs more than the solver on large Gramians.
    _checks_finiteness = False

    def __init__(self, epsilon: float = 0.001, max_iters: int = 100):
        super().__init__()
        self.epsilon = epsilon
        self.max_iters = max_iters

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}, max_iters={self.max_iters}"

    @torch.no_grad()
    def forward(self, gramian: Tensor, /) -> Tensor:
        # The sum of the entries is finite when they all are, unless it overflows.
        if not math.isfinite(float(gramian.sum())) and not is_finite(gramian):
            return torch.full_like(gramian[0], float("nan"))
        return min_norm_weights(gramian, self.max_iters)


class MGDA(GramianWeightedAggregator):
    """
    Aggregates the rows into the minimum-norm point of their convex hull (Désidéri's MGDA).

    When that point is non-zero, it has a positive inner product with every row: a step along it
    decreases all objectives. The weights are computed exactly (see :class:`MGDAWeighting`).

    :param epsilon: Kept for compatibility with torchjd 0.18 (its Frank-Wolfe stopping step size);
        unused by the exact solver.
    :param max_iters: Maximum number of removal steps of the active-set solver (see
        :class:`MGDAWeighting`).

    >>> import torch
    >>> from torchjd.aggregation import MGDA
    >>> A = MGDA()
    >>> A
    MGDA(epsilon=0.001, max_iters=100)
    >>> A(torch.tensor([[2., 0.], [0., 1.]]))
    tensor([0.4000, 0.8000])
    """

    epsilon = Delegated()
    max_iters = Delegated()

    def __init__(self, epsilon: float = 0.001, max_iters: int = 100):
        super().__init__(MGDAWeighting(epsilon=epsilon, max_iters=max_iters))

    def extra_repr(self) -> str:
        return self.gramian_weighting.extra_repr()
