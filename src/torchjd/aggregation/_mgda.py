"""
MGDA: the minimum-norm point of the convex hull of the rows.

From `Multiple-gradient descent algorithm (MGDA) for multiobjective optimization
<https://doi.org/10.1016/j.crma.2012.03.014>`_ (Désidéri, Comptes Rendus Mathématique 2012). The
aggregation is ``J^T w*`` with

``w* = argmin_{w ∈ Δ_m} w^T G w``, ``G = J J^T``, ``Δ_m`` the probability simplex.

Solved exactly, not by Frank-Wolfe iterations. With the rows lifted to ``(g_i, -1)`` (Gramian
``H = G + 1 1^T``), the projection of ``(0, 1)`` onto their dual cone is ``(0, 1) + Σ_i μ_i (g_i,
-1)`` with

``μ* = argmin_{μ ≥ 0} ½ μ^T H μ - 1^T μ``,

and ``Σ_i μ*_i g_i`` is the minimum-norm point of the hull up to a positive factor (it is zero when
the hull contains the origin), so ``w* = μ* / Σ_i μ*_i``. Unlike the simplex problem, this one is
bounded and has a unique solution whenever ``H`` is positive definite. Its optimality conditions
(``μ ≥ 0``, ``Hμ ≥ 1``, ``μ_i (Hμ - 1)_i = 0``) are solved by block principal pivoting (Júdice and
Pires 1994, as in Kim and Park's NNLS solver): guess the set of positive ``μ_i``, solve the linear
system on it, swap every index that violates a condition, and after three swaps that do not reduce
the number of violations swap only the largest violating index, which guarantees termination.
Starting from all rows (the answer when no row is dominated), a single solve usually suffices.
"""

import torch
from torch import Tensor

from ._aggregator_bases import GramianWeightedAggregator
from ._checks import Delegated, Hyperparameter, int_at_least, real_in
from ._weighting_bases import GramianWeighting

# Swaps of the whole violating set allowed without reducing its size, before single swaps.
_BLOCK_SWAP_BUDGET = 3
# Above this many rows, the full-support solution is first tried with this many conjugate gradient
# steps (cheaper than a factorization when the rows are far from parallel, the common case).
_CG_FROM = 32
_CG_STEPS = 40


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


def _conjugate_gradient(matrix: Tensor, steps: int) -> Tensor | None:
    """
    Returns the solution of ``matrix x = 1`` by Jacobi-preconditioned conjugate gradients when they
    reach a residual at rounding level within ``steps`` steps (a well-conditioned system), else
    ``None``.
    """
    ones = torch.ones(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
    inverse_diagonal = 1.0 / matrix.diagonal()
    tolerance = 64.0 * torch.finfo(matrix.dtype).eps * matrix.shape[0]
    x = inverse_diagonal.clone()
    residual = ones - matrix @ x
    preconditioned = inverse_diagonal * residual
    direction = preconditioned
    rho = residual @ preconditioned
    for step in range(1, steps + 1):
        product = matrix @ direction
        alpha = rho / (direction @ product)
        x = x + alpha * direction
        residual = residual - alpha * product
        if step % 4 == 0 and float(residual.abs().max()) <= tolerance:
            # The recursive residual drifts from the true one: accept only the true one.
            if float((ones - matrix @ x).abs().max()) <= tolerance:
                return x
        preconditioned = inverse_diagonal * residual
        rho, previous_rho = residual @ preconditioned, rho
        direction = preconditioned + (rho / previous_rho) * direction
    return None


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


def _solve_on_free_set(lifted: Tensor, free: Tensor) -> Tensor:
    """Returns ``μ`` with ``(Hμ)_F = 1`` on the free set ``F`` and ``μ = 0`` outside it."""
    is_full = bool(free.all())
    indices = free.nonzero().squeeze(1)
    block = lifted if is_full else lifted[indices][:, indices]
    k = indices.shape[0]
    solution = factor_and_solve(block, torch.ones_like(block[0]))
    if is_full:
        return solution
    multipliers = torch.zeros(lifted.shape[0], dtype=lifted.dtype, device=lifted.device)
    multipliers[indices] = solution
    return multipliers


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


def min_norm_weights(gramian: Tensor, max_iters: int) -> Tensor:
    """
    Returns ``argmin_{w ∈ Δ_m} w^T G w`` for a finite PSD Gramian ``G`` ``[m, m]``, exactly (see the
    module docstring), after at most ``max_iters`` pivoting steps (each one linear solve).
    """
    m = gramian.shape[0]
    if m == 1:
        return torch.ones(1, dtype=gramian.dtype, device=gramian.device)
    if m == 2:
        return _two_row_weights(gramian)
    scale = gramian.diagonal().max()
    if not scale > 0:  # all rows are zero: any weights give the zero vector
        return torch.full((m,), 1.0 / m, dtype=gramian.dtype, device=gramian.device)
    # Solved in float64 (the problem is only m x m).
    gramian64 = gramian.to(torch.float64, copy=True)
    if m > _CG_FROM:
        # The common case first: no row is dominated, so w ∝ G^{-1} 1 > 0, which conjugate
        # gradients find in a few matrix-vector products when the rows are far from parallel.
        inverse_times_ones = _conjugate_gradient(gramian64, _CG_STEPS)
        if inverse_times_ones is not None and bool((inverse_times_ones > 0).all()):
            return (inverse_times_ones / inverse_times_ones.sum()).to(gramian.dtype)
    # The lifted problem, on the Gramian scaled to a unit diagonal maximum: the weights do not
    # depend on the scale of the rows.
    lifted = gramian64.mul_(1.0 / float(scale)).add_(1.0)
    tolerance = 64.0 * m * torch.finfo(lifted.dtype).eps
    free = torch.ones(m, dtype=torch.bool, device=gramian.device)
    best_count, budget = m + 1, _BLOCK_SWAP_BUDGET
    multipliers = _solve_on_free_set(lifted, free)
    for _ in range(max_iters):
        slacks = lifted @ multipliers - 1.0  # H μ - 1, zero on the free set
        violating = torch.where(free, multipliers < 0.0, slacks < -tolerance)
        count = int(violating.sum())
        if count == 0:
            break
        if count < best_count:
            best_count, budget = count, _BLOCK_SWAP_BUDGET
        elif budget > 0:
            budget -= 1
        else:
            # Block swaps do not make progress (typically several optimal supports, when the hull
            # contains the origin): finish with single pivots, which never cycle.
            multipliers = solve_nonnegative_qp(lifted, -torch.ones_like(multipliers), 3 * m)
            break
        free = free ^ violating
        multipliers = _solve_on_free_set(lifted, free)
    multipliers = multipliers.clamp(min=0.0)
    return (multipliers / multipliers.sum()).to(gramian.dtype)


class MGDAWeighting(GramianWeighting):
    """
    Weights ``w* = argmin_{w ∈ Δ_m} w^T G w`` of the Gramian ``G`` ``[m, m]``, computed exactly.

    The weights are non-negative and sum to one; they satisfy the optimality conditions
    ``(G w*)_i ≥ w*^T G w*`` for every ``i``, with equality where ``w*_i > 0``, up to rounding.
    ``m = 2`` has a closed form. They do not depend on the scale of ``G``, so the aggregation is
    scale-covariant: ``MGDA(s J) = s MGDA(J)`` for ``s > 0``. All-zero rows give uniform weights.
    Runs under ``torch.no_grad()``: the weights are not differentiated through.

    :param epsilon: Kept for compatibility with torchjd 0.18, where it is the step size below which
        the Frank-Wolfe iterations stop early. The exact solver has no step size: it is validated
        (non-negative) and otherwise unused.
    :param max_iters: Maximum number of pivoting steps of the solver (each one linear solve on the
        support). The exact solution is usually found in one or two; when the bound is reached, the
        current guess, clipped onto the simplex, is returned.

    >>> import torch
    >>> from torchjd.aggregation import MGDAWeighting
    >>> MGDAWeighting()(torch.tensor([[4., 0.], [0., 1.]]))
    tensor([0.2000, 0.8000])
    """

    epsilon = Hyperparameter(real_in(0.0))
    max_iters = Hyperparameter(int_at_least(1))

    def __init__(self, epsilon: float = 0.001, max_iters: int = 100):
        super().__init__()
        self.epsilon = epsilon
        self.max_iters = max_iters

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}, max_iters={self.max_iters}"

    @torch.no_grad()
    def forward(self, gramian: Tensor, /) -> Tensor:
        return min_norm_weights(gramian, self.max_iters)


class MGDA(GramianWeightedAggregator):
    """
    Aggregates the rows into the minimum-norm point of their convex hull (Désidéri's MGDA).

    When that point is non-zero, it has a positive inner product with every row: a step along it
    decreases all objectives. The weights are computed exactly (see :class:`MGDAWeighting`).

    :param epsilon: Kept for compatibility with torchjd 0.18 (its Frank-Wolfe stopping step size);
        unused by the exact solver.
    :param max_iters: Maximum number of pivoting steps of the solver.

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
