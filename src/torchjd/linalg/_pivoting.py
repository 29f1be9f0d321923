"""
Batched torch kernels that solve ``min y^T C y, y >= l`` for a unit-diagonal PSD ``C`` ``[m, m]``
and a batch of bounds ``l`` ``[B, m]``: closed forms, block principal pivoting, ADMM and, in
:mod:`._lawson_hanson`, an exact active-set method in the space of a factor of ``C``.
:mod:`._projection` puts a Gramian in this form and picks among them.

In the unit-diagonal form, the KKT conditions are ``y >= l``, ``C y >= 0`` and
``(C y)_i (y_i - l_i) = 0`` for every ``i``.
"""

import functools
import math

import torch
from torch import Tensor

from ._lawson_hanson import (
    pivoted_cholesky,
    solve_by_positive_null_combination,
    solve_in_factor_space,
)


def solve_general(gramian: Tensor, u: Tensor, tolerance: float, rank_threshold: float) -> Tensor:
    """
    Returns ``v = argmin_{v >= u} v^T G v`` ``[B, m]`` for ``G`` ``[m, m]`` (``m >= 3``) and ``u``
    ``[B, m]``, both finite and in the working dtype.

    With ``d = diag(G)`` (floored at ``eps * max(d)``) and ``D = diag(d)``, ``y = D^{1/2} v`` turns
    the problem into ``argmin_{y >= D^{1/2} u} y^T C y`` with the unit-diagonal
    ``C = D^{-1/2} G D^{-1/2}``, so the magnitude of ``G`` and the spread of its diagonal do not
    matter. Up to :data:`DIRECT_PIVOTING_MAX_SIZE` rows, direct pivoting solves it. Otherwise, and
    for the vectors where it fails: when ``C`` is singular (a pivot of its Cholesky factorization
    below ``rank_threshold``, the precision in which ``G`` is given), a factorization with diagonal
    pivoting gives its rank ``r`` and a factor ``[m, r]``, and if the rows positively span their
    span, the solution has a closed form. Else ADMM solves the batch, and Lawson and Hanson's method
    in the space of the factor finishes the vectors that it does not, at a cost that grows with
    ``r`` and not with ``m``.
    """

    m = gramian.shape[0]
    correlation, root_d = _to_unit_diagonal(gramian)
    lower = u * root_d  # the bound on y = D^{1/2} v

    if m <= DIRECT_PIVOTING_MAX_SIZE:
        y, solved = solve_by_direct_pivoting(correlation, lower, tolerance)
        if solved is not None and not bool(solved.all()):
            unsolved = ~solved
            y[unsolved] = _solve_large(correlation, lower[unsolved], tolerance, rank_threshold)
    else:
        y = _solve_large(correlation, lower, tolerance, rank_threshold)
    # The bound is kept exactly, whatever the rounding of the division.
    return torch.maximum(y / root_d, u)


def _solve_large(
    correlation: Tensor, lower: Tensor, tolerance: float, rank_threshold: float
) -> Tensor:
    """The path of :func:`solve_general` beyond direct pivoting, on the unit-diagonal form."""

    factor = _factor_if_singular(correlation, rank_threshold)
    if factor is not None:
        y = solve_by_positive_null_combination(factor, lower, tolerance)
        if y is not None:
            return y
    y, converged = _solve_by_admm(correlation, lower, tolerance)
    if not bool(converged.all()):
        # ADMM is fast on well-conditioned Gramians only; finish the others exactly, from its
        # iterates.
        remaining = ~converged
        if factor is None:
            factor = pivoted_cholesky(correlation, rank_threshold, correlation.shape[0])
            assert factor is not None  # the rank never exceeds m
        y[remaining] = solve_in_factor_space(
            factor, lower[remaining], tolerance, start=y[remaining]
        )
    return y


def _factor_if_singular(correlation: Tensor, rank_threshold: float) -> Tensor | None:
    """
    Returns the factor of :func:`pivoted_cholesky` of ``C`` when its rank is below ``m``, else
    ``None``. An unpivoted Cholesky factorization (one call, much faster than pivoting column by
    column) first tells whether a pivot falls below the threshold.
    """

    cholesky, info = torch.linalg.cholesky_ex(correlation)
    if int(info) == 0 and float(cholesky.diagonal().amin()) ** 2 > rank_threshold:
        return None
    m = correlation.shape[0]
    factor = pivoted_cholesky(correlation, rank_threshold, m)
    assert factor is not None  # the rank never exceeds m
    return factor if factor.shape[1] < m else None


def solve_pair(gramian: Tensor, u: Tensor) -> Tensor:
    """
    Closed form for ``m = 2``. At the solution each coordinate minimizes the objective with the
    other fixed: ``v_i = max(u_i, -G_ij v_j / G_ii)``. So if ``v_1 = u_1`` is active then
    ``v = (u_1, max(u_2, -G_12 u_1 / G_22))``, symmetrically if ``v_2 = u_2`` is, and if neither is
    then ``v = 0`` (feasible only when ``u <= 0``). All candidates are feasible, so the one with the
    smallest ``v^T G v`` is a solution.
    """

    diagonal = torch.diagonal(gramian).clamp(min=0.0)
    scale = diagonal.max()
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    g = gramian / scale
    g11, g12, _, g22 = g.flatten().unbind()
    eps = torch.finfo(g.dtype).eps
    u1, u2 = u.unbind(dim=1)
    a2 = torch.maximum(u2, -g12 * u1 / g22.clamp(min=eps))
    b1 = torch.maximum(u1, -g12 * u2 / g11.clamp(min=eps))
    candidates = torch.stack(
        [torch.stack([u1, a2], dim=1), torch.stack([b1, u2], dim=1)]
    )  # [2, B, 2]
    objectives = ((candidates @ g) * candidates).sum(dim=2)  # [2, B]
    v = torch.where((objectives[0] <= objectives[1])[:, None], candidates[0], candidates[1])
    zero_is_feasible = (u <= 0).all(dim=1, keepdim=True)
    return torch.where(zero_is_feasible, torch.zeros_like(v), v)


def _to_unit_diagonal(gramian: Tensor) -> tuple[Tensor, Tensor]:
    """Returns ``C = D^{-1/2} G D^{-1/2}`` and ``D^{1/2}`` (as a vector ``[m]``), ``d`` floored."""

    diagonal = torch.diagonal(gramian).clamp(min=0.0)
    scale = diagonal.max()
    # A zero Gramian gets scale 1, so that d is floored to eps (and C = 0) instead of 0.
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    eps = torch.finfo(gramian.dtype).eps
    root_d = torch.sqrt(torch.maximum(diagonal, scale * eps))
    # Dividing twice by sqrt(d) never forms d_i d_j, which overflows for a Gramian of scale 1e30.
    correlation = gramian / root_d[:, None] / root_d[None, :]
    correlation = (correlation + correlation.T) / 2.0
    return correlation, root_d


def _kkt_violation(correlation: Tensor, y: Tensor, lower: Tensor) -> Tensor:
    """
    Returns, for each row of ``y`` ``[B, m]`` (with ``y >= l``), the relative KKT violation of
    ``min y^T C y, y >= l``: the largest of ``max(-(C y)_i, 0) / ν`` and
    ``|(C y)_i (y_i - l_i)| / ν²``, with ``ν = max(max_i |y_i|, max_i |l_i|)``.
    """

    w = y @ correlation  # C y, C symmetric
    nu = torch.maximum(y.abs().amax(dim=1, keepdim=True), lower.abs().amax(dim=1, keepdim=True))
    nu = torch.where(nu > 0, nu, torch.ones_like(nu))
    negative_part = (-w).clamp(min=0.0) / nu
    complementarity = (w.abs() * (y - lower)) / (nu * nu)
    return torch.maximum(negative_part, complementarity).amax(dim=1)


DIRECT_PIVOTING_MAX_SIZE = 32


def solve_by_direct_pivoting(
    correlation: Tensor, lower: Tensor, tolerance: float
) -> tuple[Tensor, Tensor | None]:
    """
    Returns ``y`` ``[B, m]`` for ``min y^T C y, y >= l`` and the batch ``l``, with :func:`pivot`'s
    mask of the vectors that it solved (``None`` when it solved all of them).

    Each bound is first divided by its largest magnitude (the solution scales with it), so that one
    threshold fits the whole batch; the first guess of the free set is ``{i : (C l)_i < 0}``.
    """

    scale = lower.abs().amax(dim=1, keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = (lower / scale) @ correlation
    s, solved = pivot(correlation, q, q < 0, tolerance)
    return torch.addcmul(lower, s, scale), solved


def pivot(
    correlation: Tensor, q: Tensor, free: Tensor, tolerance: float
) -> tuple[Tensor, Tensor | None]:
    """
    Up to three rounds of block principal pivoting on the linear complementarity problem
    ``s >= 0``, ``w = q + C s >= 0``, ``s^T w = 0`` for a batch ``q`` ``[B, m]``: with ``q = C l``
    and ``y = l + s``, these are the KKT conditions of ``min y^T C y, y >= l``. ``C`` must have a
    unit diagonal and the bounds a largest magnitude of at most 1.

    Each round guesses the free set ``F`` of every vector (``w_F = 0``, ``s = 0`` off ``F``) and
    solves, for the whole batch at once, the square systems ``[C_{:F}  -I_{:A}] z = -q`` whose
    solution holds ``s_F`` on ``F`` and ``w_A`` on the complement ``A``. The guess is right when no
    ``z_i`` is below ``-t``; otherwise the variables with ``z_i < -t`` flip, all at once. On
    well-conditioned problems, the first or second round is exact.

    Returns ``s`` (clamped at 0, zero off ``F``) and the mask ``[B]`` of the vectors whose ``s``
    satisfies the KKT conditions within the tolerance, or ``None`` when all of them do. That common
    case is decided from ``min z`` and ``max z`` alone: ``w_F = 0`` holds up to the rounding of the
    solve, and for LU with partial pivoting the residual of ``M z = b`` is at most about
    ``6 m^3 ρ eps ||M||_∞ ||z||_∞`` (Higham, *Accuracy and Stability of Numerical Algorithms*,
    Thm 9.4 and Lemma 9.6), with ``||M||_∞ <= m`` here and the growth factor ``ρ`` taken below 8
    (it stays near 1 in practice). When ``||z||_∞`` is too large for that bound to be below ``t``,
    or some vector is not solved, the KKT conditions are checked explicitly, vector by vector.
    """

    m = correlation.shape[0]
    # Clamping s_F at 0 moves each w_i by at most m t: t = tolerance / (4 m) keeps it below it.
    threshold = tolerance / (4.0 * m)
    trusted = threshold / (48.0 * m**4 * torch.finfo(correlation.dtype).eps)
    negative_identity = _negative_identity(m, correlation.dtype, correlation.device)
    negative_q = -q
    for round_ in range(3):
        systems = torch.where(free[:, None, :], correlation, negative_identity)
        z = torch.linalg.solve_ex(systems, negative_q)[0]
        low, high = torch.aminmax(z)
        feasible = float(low) >= -threshold  # False for a NaN (from a singular system)
        if feasible or round_ == 2:
            break
        free = free ^ (z < -threshold)
    s = z.clamp_(min=0.0).mul_(free)
    if feasible and float(high) <= trusted:
        return s, None
    w = torch.addmm(q, s, correlation)
    # A NaN (from a singular system) fails the comparison.
    return s, torch.where(free, w.abs(), -w).amax(dim=1) <= tolerance / 2.0


# ADMM stops when its residuals did not halve over this many iterations.
_STALL_WINDOW = 50
# From this many rows, ADMM starts with this many iterations in float32.
_FLOAT32_START_FROM = 128
_FLOAT32_ITERATIONS = 8


def _solve_by_admm(
    correlation: Tensor, lower: Tensor, tolerance: float, max_iterations: int = 1000
) -> tuple[Tensor, Tensor]:
    """
    Runs over-relaxed ADMM on ``min y^T C y, y >= l`` for the batch ``l`` ``[B, m]``.

    Splitting ``y = z`` with ``z >= l``, each iteration costs one product with the shared inverse
    ``(C + ρ I)^{-1}``. ``ρ`` is rebalanced from the ratio of the primal and dual residuals (as in
    OSQP), which costs a new ``[m, m]`` inverse. The over-relaxation ``α = 1.6``: nearer 2 takes
    20 to 30 % fewer iterations on well-conditioned Gramians, but along the (near) null space of a
    singular or ridged one the error shrinks only by about ``|1 - α|`` per iteration (measured at
    1.9: duplicated rows 4 times slower, ``QuadprogProjector`` on them 100 times). It stops when
    every vector is solved, or when its
    residuals did not halve over the last :data:`_STALL_WINDOW` iterations (a singular or very
    ill-conditioned ``C``, left to the exact finisher). Returns ``z`` (which satisfies ``z >= l``)
    and which rows reached the KKT tolerance.
    """

    m = correlation.shape[0]
    rho = 1.0
    alpha = 1.6
    eye = torch.eye(m, dtype=correlation.dtype, device=correlation.device)

    def scaled_inverse(rho: float) -> Tensor:
        # C + ρ I is positive definite: Cholesky, then its inverse, costs half an LU inverse.
        factor, info = torch.linalg.cholesky_ex(correlation + rho * eye)
        if int(info) == 0:
            inverse = torch.cholesky_inverse(factor) * rho  # ρ (C + ρ I)^{-1}
        else:  # rounding made C + ρ I indefinite (ρ tiny)
            inverse = torch.linalg.inv(correlation + rho * eye) * rho
        return (inverse + inverse.T) / 2.0

    inverse = scaled_inverse(rho) * alpha
    z = lower.clamp(min=0.0)
    dual = torch.zeros_like(lower)  # the scaled multiplier λ / ρ
    if lower.dtype == torch.float64 and m >= _FLOAT32_START_FROM:
        # The first iterations only need float32's precision, whose product costs half as much.
        z32, dual32, inverse32, lower32 = z.float(), dual.float(), inverse.float(), lower.float()
        for _ in range(_FLOAT32_ITERATIONS):
            shifted = torch.addmm(z32, z32 - dual32, inverse32, beta=1.0 - alpha).add_(dual32)
            z32 = torch.maximum(shifted, lower32)
            dual32 = shifted.sub_(z32)
        z = torch.maximum(z32.double(), lower)
        dual = dual32.double()
    # Stop a bit tighter than the tolerance so that rounding in the final check cannot fail it.
    target = max(tolerance / 4.0, 50.0 * torch.finfo(lower.dtype).eps)
    converged = torch.zeros(lower.shape[0], dtype=torch.bool, device=lower.device)
    scale = max(float(lower.abs().max()), torch.finfo(lower.dtype).tiny)
    history: list[float] = []
    rebalance_every = 8
    for iteration in range(1, max_iterations + 1):
        # The over-relaxed x = α (z - dual) ρ (C + ρ I)^{-1} + (1 - α) z, in one fused product.
        x = torch.addmm(z, z - dual, inverse, beta=1.0 - alpha)
        z_previous = z
        shifted = x + dual
        z = torch.maximum(shifted, lower)
        dual = shifted - z
        # The residuals cost two passes over the batch; the KKT check, a product with C, only
        # runs once they (which bound the violation up to a factor) are near the target.
        if iteration >= 6 and iteration % 2 == 0:
            primal = float((x - z).abs().max())
            dual_residual = rho * float((z - z_previous).abs().max())
            residual = max(primal, dual_residual)
            if residual <= 100.0 * target * scale:
                converged = _kkt_violation(correlation, z, lower) <= target
                if bool(converged.all()):
                    break
            history.append(residual)
            window = _STALL_WINDOW // 2  # residuals are recorded every other iteration
            if len(history) > window and not residual <= 0.5 * history[-window - 1]:
                break
            rebalance = iteration % rebalance_every == rebalance_every - 2
            if rebalance and primal > 0 and dual_residual > 0:
                ratio = math.sqrt(primal / dual_residual)
                if ratio > 5.0 or ratio < 0.2:
                    new_rho = min(max(rho * ratio, 1e-6), 1e6)
                    dual = dual * (rho / new_rho)
                    rho = new_rho
                    inverse = scaled_inverse(rho) * alpha
    if not bool(converged.all()):
        converged = _kkt_violation(correlation, z, lower) <= target
    return z, converged


@functools.lru_cache(maxsize=64)
def _negative_identity(m: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``-I`` ``[m, m]``, cached: it is only read, and building it costs two of the ~20 operations
    of the fast paths."""

    return -torch.eye(m, dtype=dtype, device=device)


def regularized_correlation(gramian: Tensor, trace: float, ridge: float) -> tuple[Tensor, Tensor]:
    """
    Returns the unit-diagonal form ``C`` of ``H = G / tr(G) + ridge I`` and ``r`` ``[m]`` such that
    ``C = R (G + G^T) R`` off the diagonal, with ``R = diag(r)``, in float64 (float32 on MPS), for
    ``trace = tr(G) > 0`` already read. With ``v = r * y``, ``min v^T H v`` becomes
    ``min y^T C y`` up to a constant factor.

    The normalization and the unit-diagonal scaling are merged: with ``S = G + G^T`` (symmetric
    whatever the rounding of ``G``) and ``d = diag(S) + ridge tr(S)``, ``C_ij = S_ij / sqrt(d_i d_j)``
    and ``r = 1 / sqrt(d)``, so ``tr(G)`` is never divided by.
    """

    dtype = torch.float64 if gramian.device.type != "mps" else torch.float32
    symmetric = gramian.to(dtype) + gramian.mT  # promotes to dtype in the same operation
    # d floored like _to_unit_diagonal does (for ridge = 0 and a zero row), from tr(S) = 2 tr(G).
    floor = 2.0 * torch.finfo(dtype).eps * trace
    r = torch.diagonal(symmetric).add(2.0 * ridge * trace).clamp_(min=floor).rsqrt_()
    correlation = symmetric.mul_(r).mul_(r[:, None])
    correlation.diagonal().fill_(1.0)
    return correlation, r


def project_regularized(
    gramian: Tensor, trace: float, ridge: float, vectors: Tensor, tolerance: float
) -> Tensor | None:
    """
    Fast path of :func:`solve_general` on ``G / tr(G) + ridge I`` (``ridge = 0``: on ``G`` itself,
    whose minimizers do not depend on its scale) for the small ``m`` of UPGrad and DualProj: the
    same direct pivoting, without the generic checks and conversions
    (on CPU each tensor operation costs a few microseconds whatever ``m`` is, so their number is
    the time). Returns ``v`` ``[B, m]`` in float64 (float32 on MPS) for ``vectors`` ``[B, m]``, or
    ``None`` when pivoting fails (the caller then takes the general path).
    """

    correlation, r = regularized_correlation(gramian, trace, ridge)
    u = vectors.to(correlation.dtype)
    y, solved = solve_by_direct_pivoting(correlation, u / r, tolerance)
    if solved is not None and not bool(solved.all()):
        return None
    # v = r * y, with the bound v >= u kept exactly whatever the rounding.
    return torch.maximum(y * r, u)


def sum_of_basis_projections(
    gramian: Tensor, trace: float, ridge: float, weights: Tensor, tolerance: float
) -> Tensor | None:
    """
    Returns ``Σ_i argmin_{v >= p_i e_i} v^T H v`` ``[m]`` for ``H = G / tr(G) + ridge I`` and
    ``p = weights`` ``[m]`` (UPGrad's preferences), in float64 (float32 on MPS), or ``None`` when
    pivoting fails: :func:`project_regularized` of ``diag(p)`` summed, in fewer operations.

    A bound ``p_i <= 0`` has the solution ``0``. For ``p_i > 0``, in ``y = v / r`` the bound is
    ``(p_i / r_i) e_i`` and the solution scales with it: ``y = (p_i / r_i) (e_i + s^(i))`` where
    ``s^(i)`` solves the problem with the bound ``e_i``, whose ``q = C e_i`` is row ``i`` of ``C``.
    So the sum is ``p⁺ + r * ((p⁺ / r) @ S)``.
    """

    correlation, r = regularized_correlation(gramian, trace, ridge)
    s, solved = pivot(correlation, correlation, correlation < 0, tolerance)
    if solved is not None and not bool(solved.all()):
        return None
    positive = weights.to(correlation.dtype).clamp(min=0.0)
    return torch.addcmul(positive, r, (positive / r) @ s)
