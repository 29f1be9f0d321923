"""
Projection onto the dual cone of the rows of a matrix, expressed in weight space.

For a matrix ``J`` ``[m, n]`` with Gramian ``G = J J^T`` and a weight vector ``u`` ``[m]``, the
projection of ``J^T u`` onto the dual cone ``{x : J x >= 0}`` is ``J^T v`` with

``v = argmin_{v >= u} v^T G v``.

This is the inner problem of UPGrad and DualProj. Its KKT conditions are ``v >= u``, ``G v >= 0``
and ``(G v)_i (v_i - u_i) = 0`` for every ``i``.
"""

import functools
import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor


def _check_inputs(gramian: Tensor, vectors: Tensor) -> None:
    if not isinstance(gramian, Tensor):
        raise TypeError(
            f"Parameter `gramian` should be a Tensor. Found `{type(gramian).__name__}`."
        )
    if not isinstance(vectors, Tensor):
        raise TypeError(
            f"Parameter `vectors` should be a Tensor. Found `{type(vectors).__name__}`."
        )
    if gramian.dim() != 2 or gramian.shape[0] != gramian.shape[1]:
        raise ValueError(
            "Parameter `gramian` should be a square matrix [m, m]. Found shape "
            f"{tuple(gramian.shape)}."
        )
    if vectors.dim() < 1 or vectors.shape[-1] != gramian.shape[0]:
        raise ValueError(
            f"Parameter `vectors` should have shape [..., m] with m = {gramian.shape[0]} (the size "
            f"of `gramian`). Found shape {tuple(vectors.shape)}."
        )


class DualConeProjector(ABC):
    """
    Solves ``v = argmin_{v >= u} v^T G v`` for a PSD Gramian ``G`` ``[m, m]`` and a batch of ``u``.

    Calling a projector with ``gramian`` ``[m, m]`` and ``vectors`` ``[..., m]`` returns the
    solutions ``[..., m]``, one per vector, with the dtype and on the device of ``vectors``. The
    comparison ``v >= u`` is elementwise. For ``G = J J^T``, ``J^T v`` is the projection of
    ``J^T u`` onto the dual cone of the rows of ``J``.

    Subclasses implement :meth:`solve`; calling the projector validates the shapes first.
    """

    def __call__(self, gramian: Tensor, vectors: Tensor) -> Tensor:
        _check_inputs(gramian, vectors)
        return self.solve(gramian, vectors)

    @abstractmethod
    def solve(self, gramian: Tensor, vectors: Tensor) -> Tensor:
        """Returns the solutions ``[..., m]`` for validated ``gramian`` and ``vectors``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def default_kkt_tolerance(dtype: torch.dtype) -> float:
    """
    Returns the default relative KKT tolerance of :class:`ActiveSetDualConeProjector` for a dtype.

    It is the square root of the machine epsilon of the dtype (float32 for lower precisions):
    about ``3.5e-4`` for float32 and ``1.5e-8`` for float64. The solver itself works in float64
    (except on MPS) and usually ends far below it.
    """

    return math.sqrt(torch.finfo(_work_dtype(dtype)).eps)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


class ActiveSetDualConeProjector(DualConeProjector):
    """
    Batched, pure-torch solver of ``v = argmin_{v >= u} v^T G v``, exact up to a KKT tolerance.

    The problem is first put in a scale-free form: with ``d = diag(G)`` (floored at
    ``eps * max(d)``) and ``D = diag(d)``, the change of variables ``y = D^{1/2} v`` turns it into
    ``argmin_{y >= D^{1/2} u} y^T C y`` with the unit-diagonal ``C = D^{-1/2} G D^{-1/2}``, so the
    magnitude of ``G`` (``1e-30`` or ``1e30``) and the spread of its diagonal do not matter.

    - ``m = 1`` has the closed form ``v = max(u, 0)``.
    - ``m = 2`` has a closed form (the best of three candidates).
    - For ``m <= 16``, up to three rounds of block principal pivoting on ``C`` (one batched
      ``[B, m, m]`` solve each) are exact on well-conditioned problems.
    - Otherwise, and for the vectors where that fails, ADMM iterations (one shared ``[m, m]``
      inverse, one matrix product per iteration) solve the whole batch; the vectors for which
      they do not reach the tolerance quickly are finished by proximal block principal pivoting
      (Júdice and Pires, 1994), an active-set method that solves the exact reduced systems of
      ``min y^T C y + δ ||y - y_k||²`` for a decreasing ``δ``, which stays well conditioned when
      ``G`` is singular.

    All of this runs in float64 (float32 on MPS), on the device of ``gramian``; the result is cast
    to the dtype of ``vectors``. Apart from a few convergence checks per call, nothing leaves the
    device.

    **Guarantee on exit.** With ``τ`` the tolerance, ``s = max_i G_ii`` and
    ``ν = max(max_i |v_i|, max_i |u_i|)`` (per vector): ``v >= u`` holds exactly,
    ``(G v)_i >= -τ s ν`` and ``|(G v)_i (v_i - u_i)| <= τ s ν²`` for every ``i``. For a positive
    definite ``G`` the solution is unique; for a singular one, any minimizer may be returned.

    :param tolerance: The relative KKT tolerance ``τ``. ``None`` means
        :func:`default_kkt_tolerance` of the dtype of ``vectors``.

    >>> import torch
    >>> from torchjd.linalg import ActiveSetDualConeProjector
    >>> gramian = torch.tensor([[4., -2.], [-2., 4.]])
    >>> ActiveSetDualConeProjector()(gramian, torch.eye(2))
    tensor([[1.0000, 0.5000],
            [0.5000, 1.0000]])
    """

    def __init__(self, tolerance: float | None = None):
        if tolerance is not None:
            if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)):
                found = type(tolerance).__name__
                raise TypeError(
                    f"Parameter `tolerance` should be a float or None. Found `{found}`."
                )
            if not 0.0 < tolerance < 1.0:
                raise ValueError(f"Parameter `tolerance` should be in (0, 1). Found `{tolerance}`.")
        self.tolerance = tolerance

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tolerance={self.tolerance})"

    def solve(self, gramian: Tensor, vectors: Tensor) -> Tensor:
        # Nothing here is differentiated through: detaching is cheaper than a no_grad context.
        gramian = gramian.detach()
        vectors = vectors.detach()
        m = gramian.shape[0]
        out_dtype = vectors.dtype if vectors.is_floating_point() else gramian.dtype
        precision = _work_dtype(torch.promote_types(gramian.dtype, out_dtype))
        tolerance = (
            self.tolerance if self.tolerance is not None else default_kkt_tolerance(precision)
        )
        # The m x m work is cheap next to forming G: doing it in float64 (where the device has it)
        # makes float32 results accurate to their own rounding instead of to the tolerance.
        dtype = torch.float64 if gramian.device.type != "mps" else precision
        u = vectors.reshape(-1, m).to(dtype=dtype, device=gramian.device)
        if u.shape[0] == 0 or m == 0:
            return vectors.new_zeros(vectors.shape, dtype=out_dtype)
        if m == 1:
            # g v² with v >= u: v = max(u, 0) is a minimizer whatever g >= 0 is.
            v = u.clamp(min=0.0)
        elif m == 2:
            v = _solve_pair(gramian.to(dtype), u)
        else:
            v = self._solve_general(gramian.to(dtype), u, tolerance)
        return v.to(dtype=out_dtype, device=vectors.device).reshape(vectors.shape)

    def _solve_general(self, gramian: Tensor, u: Tensor, tolerance: float) -> Tensor:
        m = gramian.shape[0]
        correlation, root_d = _to_unit_diagonal(gramian)
        lower = u * root_d  # the bound on y = D^{1/2} v

        if m <= _DIRECT_PIVOTING_MAX_SIZE:
            y, solved = _solve_by_direct_pivoting(correlation, lower, tolerance)
            if solved is not None and not bool(solved.all()):
                unsolved = ~solved
                y[unsolved] = self._solve_iteratively(correlation, lower[unsolved], tolerance)
        else:
            y = self._solve_iteratively(correlation, lower, tolerance)
        # The bound is kept exactly, whatever the rounding of the division.
        return torch.maximum(y / root_d, u)

    @staticmethod
    def _solve_iteratively(correlation: Tensor, lower: Tensor, tolerance: float) -> Tensor:
        y, converged = _solve_by_admm(correlation, lower, tolerance)
        if not bool(converged.all()):
            # ADMM is fast on well-conditioned Gramians only; finish the others exactly. Pivoting
            # returns, per vector, the better of its warm start and its own iterates.
            remaining = ~converged
            y[remaining] = _solve_by_principal_pivoting(
                correlation, lower[remaining], y[remaining], tolerance
            )
        return y


def _solve_pair(gramian: Tensor, u: Tensor) -> Tensor:
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


_DIRECT_PIVOTING_MAX_SIZE = 16


def _solve_by_direct_pivoting(
    correlation: Tensor, lower: Tensor, tolerance: float
) -> tuple[Tensor, Tensor | None]:
    """
    Returns ``y`` ``[B, m]`` for ``min y^T C y, y >= l`` and the batch ``l``, with :func:`_pivot`'s
    mask of the vectors that it solved (``None`` when it solved all of them).

    Each bound is first divided by its largest magnitude (the solution scales with it), so that one
    threshold fits the whole batch; the first guess of the free set is ``{i : (C l)_i < 0}``.
    """

    scale = lower.abs().amax(dim=1, keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = (lower / scale) @ correlation
    s, solved = _pivot(correlation, q, q < 0, tolerance)
    return torch.addcmul(lower, s, scale), solved


def _pivot(
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


def _solve_by_admm(
    correlation: Tensor, lower: Tensor, tolerance: float, max_iterations: int = 150
) -> tuple[Tensor, Tensor]:
    """
    Runs over-relaxed ADMM on ``min y^T C y, y >= l`` for the batch ``l`` ``[B, m]``.

    Splitting ``y = z`` with ``z >= l``, each iteration costs one product with the shared inverse
    ``(C + ρ I)^{-1}``. ``ρ`` is rebalanced from the ratio of the primal and dual residuals (as in
    OSQP), which costs a new ``[m, m]`` inverse. Returns ``z`` (which satisfies ``z >= l``) and
    which rows reached the KKT tolerance.
    """

    m = correlation.shape[0]
    rho = 1.0
    alpha = 1.6
    eye = torch.eye(m, dtype=correlation.dtype, device=correlation.device)

    def scaled_inverse(rho: float) -> Tensor:
        inverse = torch.linalg.inv(correlation + rho * eye) * rho  # ρ (C + ρ I)^{-1}
        return (inverse + inverse.T) / 2.0

    inverse = scaled_inverse(rho) * alpha
    z = lower.clamp(min=0.0)
    dual = torch.zeros_like(lower)  # the scaled multiplier λ / ρ
    # Stop a bit tighter than the tolerance so that rounding in the final check cannot fail it.
    target = max(tolerance / 64.0, 50.0 * torch.finfo(lower.dtype).eps)
    converged = torch.zeros(lower.shape[0], dtype=torch.bool, device=lower.device)
    check_every = 8
    for iteration in range(1, max_iterations + 1):
        # The over-relaxed x = α (z - dual) ρ (C + ρ I)^{-1} + (1 - α) z, in one fused product.
        x = torch.addmm(z, z - dual, inverse, beta=1.0 - alpha)
        z_previous = z
        shifted = x + dual
        z = torch.maximum(shifted, lower)
        dual = shifted - z
        # Well-conditioned problems stop after 6 to 10 iterations; check often there, then less.
        if iteration in (6, 10) or iteration % check_every == check_every - 2:
            converged = _kkt_violation(correlation, z, lower) <= target
            if bool(converged.all()):
                break
            primal = float((x - z).abs().max())
            dual_residual = rho * float((z - z_previous).abs().max())
            if primal > 0 and dual_residual > 0:
                ratio = math.sqrt(primal / dual_residual)
                if ratio > 5.0 or ratio < 0.2:
                    new_rho = min(max(rho * ratio, 1e-6), 1e6)
                    dual = dual * (rho / new_rho)
                    rho = new_rho
                    inverse = scaled_inverse(rho) * alpha
    return z, converged


def _solve_by_principal_pivoting(
    correlation: Tensor, lower: Tensor, start: Tensor, tolerance: float
) -> Tensor:
    """
    Solves ``min y^T C y, y >= l`` by proximal block principal pivoting, in float64.

    A singular ``C`` makes pivoting on ``C`` itself numerically fragile, so each outer iteration
    solves the well-conditioned proximal problem ``min y^T C y + δ ||y - y_k||², y >= l`` exactly,
    with ``δ`` decreasing from ``1e-3``. Its minimizer ``y_{k+1}`` converges to a minimizer of the
    original problem (proximal point method), and the active set rarely changes between outer
    iterations, so warm-started pivoting needs one or two solves each.

    Writing ``y = l + s`` and ``M = C + δ I``, the proximal problem is the linear complementarity
    problem ``s >= 0``, ``w = q + M s >= 0``, ``s^T w = 0`` with ``q = M l - δ y_k``. Pivoting
    guesses the free set ``F``, solves ``M_FF s_F = -q_F`` for every vector at once (systems padded
    to the largest ``|F|``) and flips the variables that violate a sign condition: all of them while the
    number of violations decreases, else only the last one (Murty's rule, which terminates for a
    positive definite ``M``). Returns, per vector, the iterate with the smallest KKT violation.
    """

    out_dtype = correlation.dtype
    work_dtype = torch.float64 if correlation.device.type != "mps" else torch.float32
    eps = torch.finfo(work_dtype).eps
    c = correlation.to(work_dtype)
    lower = lower.to(work_dtype)
    batch, m = lower.shape
    eye = torch.eye(m, dtype=work_dtype, device=c.device)
    positions = torch.arange(m, device=c.device)

    y = torch.maximum(start.to(work_dtype), lower)
    best_y = y
    best_violation = _kkt_violation(c, y, lower)
    free = (y - lower) > (y @ c)  # the min-function guess of the free set
    for outer in range(12):
        delta = max(1e-3 * 0.2**outer, tolerance / 16.0)
        matrix = c + delta * eye
        q = lower @ matrix - delta * y
        nu = torch.maximum(lower.abs().amax(dim=1, keepdim=True), y.abs().amax(dim=1, keepdim=True))
        nu = torch.where(nu > 0, nu, torch.ones_like(nu))
        # Below this, a negative s_i or w_i is indistinguishable from rounding in the solves.
        flip_tolerance = nu * (tolerance / 16.0 + 100.0 * eps / delta)
        best_count = torch.full((batch,), m + 1, dtype=torch.long, device=c.device)
        chances = torch.full((batch,), 3, dtype=torch.long, device=c.device)
        s = torch.zeros_like(lower)
        for _ in range(10 + m // 4):
            s = _solve_free_systems(matrix, q, free)
            w = q + s @ matrix
            infeasible = (free & (s < -flip_tolerance)) | (~free & (w < -flip_tolerance))
            count = infeasible.sum(dim=1)
            if not bool((count > 0).any()):
                break
            improved = count < best_count
            best_count = torch.where(improved, count, best_count)
            use_full = improved | (chances > 0)
            chances = torch.where(
                improved, torch.full_like(chances, 3), chances - (~improved).long()
            )
            last = torch.where(infeasible, positions, -1).amax(dim=1, keepdim=True)
            flips = torch.where(
                use_full[:, None], infeasible, (positions[None, :] == last) & infeasible
            )
            free = free ^ flips
        y = lower + s.clamp(min=0.0)
        violation = _kkt_violation(c, y, lower)
        better = violation < best_violation
        best_y = torch.where(better[:, None], y, best_y)
        best_violation = torch.where(better, violation, best_violation)
        if bool((best_violation <= tolerance / 2.0).all()):
            break
    return best_y.to(out_dtype)


def _solve_free_systems(c: Tensor, q: Tensor, free: Tensor) -> Tensor:
    """Returns ``s`` ``[B, m]`` with ``s = 0`` off ``free`` and ``C_FF s_F = -q_F`` on it."""

    batch, m = q.shape
    sizes = free.sum(dim=1)
    k = int(sizes.max())
    s = torch.zeros_like(q)
    if k == 0:
        return s
    # Free indices first (stable), so the first k columns hold every free index of every row.
    order = torch.argsort((~free).to(torch.int8), dim=1, stable=True)[:, :k]  # [B, k]
    valid = torch.arange(k, device=c.device)[None, :] < sizes[:, None]  # [B, k]
    block = c[order[:, :, None], order[:, None, :]]  # [B, k, k]
    both = valid[:, :, None] & valid[:, None, :]
    eye = torch.eye(k, dtype=c.dtype, device=c.device)
    block = torch.where(both, block, eye.expand_as(block))
    rhs = torch.where(valid, -q.gather(1, order), torch.zeros((), dtype=c.dtype, device=c.device))
    solution, _ = torch.linalg.solve_ex(block, rhs)
    return s.scatter(1, order, torch.where(valid, solution, torch.zeros_like(solution)))


@functools.lru_cache(maxsize=64)
def _negative_identity(m: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``-I`` ``[m, m]``, cached: it is only read, and building it costs two of the ~20 operations
    of the fast paths."""

    return -torch.eye(m, dtype=dtype, device=device)


def _regularized_correlation(gramian: Tensor, trace: float, ridge: float) -> tuple[Tensor, Tensor]:
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


def _project_regularized(
    gramian: Tensor, trace: float, ridge: float, vectors: Tensor, tolerance: float
) -> Tensor | None:
    """
    Fast path of ``ActiveSetDualConeProjector()(G / tr(G) + ridge I, vectors)`` for the small ``m``
    of UPGrad and DualProj: the same direct pivoting as
    :meth:`ActiveSetDualConeProjector._solve_general`, without its generic checks and conversions
    (on CPU each tensor operation costs a few microseconds whatever ``m`` is, so their number is
    the time). Returns ``v`` ``[B, m]`` in float64 (float32 on MPS) for ``vectors`` ``[B, m]``, or
    ``None`` when pivoting fails (the caller then takes the general path).
    """

    correlation, r = _regularized_correlation(gramian, trace, ridge)
    u = vectors.to(correlation.dtype)
    y, solved = _solve_by_direct_pivoting(correlation, u / r, tolerance)
    if solved is not None and not bool(solved.all()):
        return None
    # v = r * y, with the bound v >= u kept exactly whatever the rounding.
    return torch.maximum(y * r, u)


def _sum_of_basis_projections(
    gramian: Tensor, trace: float, ridge: float, weights: Tensor | None, tolerance: float
) -> Tensor | None:
    """
    Returns ``Σ_i argmin_{v >= p_i e_i} v^T H v`` ``[m]`` for ``H = G / tr(G) + ridge I`` and
    ``p = weights`` (UPGrad's weights; ``None`` means ``1/m`` each), in float64 (float32 on MPS), or ``None`` when pivoting
    fails: :func:`_project_regularized` of ``diag(p)`` summed, in fewer operations.

    A bound ``p_i <= 0`` has the solution ``0``. For ``p_i > 0``, in ``y = v / r`` the bound is
    ``(p_i / r_i) e_i`` and the solution scales with it: ``y = (p_i / r_i) (e_i + s^(i))`` where
    ``s^(i)`` solves the problem with the bound ``e_i``, whose ``q = C e_i`` is row ``i`` of ``C``.
    So the sum is ``p⁺ + r * ((p⁺ / r) @ S)``.
    """

    correlation, r = _regularized_correlation(gramian, trace, ridge)
    s, solved = _pivot(correlation, correlation, correlation < 0, tolerance)
    if solved is not None and not bool(solved.all()):
        return None
    if weights is None:
        positive = torch.full_like(r, 1.0 / r.shape[0])
    else:
        positive = weights.to(correlation.dtype).clamp(min=0.0)
    return torch.addcmul(positive, r, (positive / r) @ s)


def _project_regularized_in_python(
    gramian: list[list[float]],
    trace: float,
    ridge: float,
    vectors: list[list[float]],
    tolerance: float,
) -> list[list[float]] | None:
    """
    :func:`_project_regularized` in Python floats (float64), for a few small problems on CPU,
    where reading the numbers once costs less than the tensor operations: the same unit-diagonal
    ``C``, first free set ``{i : (C l)_i < 0}`` and three rounds of pivoting, with each
    ``C_FF s_F = -q_F`` solved by elimination and the KKT conditions checked on the computed
    ``w = q + C s``. Returns ``None`` when a vector does not converge (or ``C_FF`` is not positive
    definite to working precision), like :func:`_project_regularized`.
    """

    m = len(gramian)
    indices = range(m)
    floor = 2.0 * torch.finfo(torch.float64).eps * trace
    r = [1.0 / math.sqrt(max(2.0 * gramian[i][i] + 2.0 * ridge * trace, floor)) for i in indices]
    c = [[(gramian[i][j] + gramian[j][i]) * r[i] * r[j] for j in indices] for i in indices]
    for i in indices:
        c[i][i] = 1.0
    factor = tolerance / (4.0 * m)
    solutions = []
    for u in vectors:
        lower = [x / ri for x, ri in zip(u, r)]
        q = [0.0] * m
        for x, row in zip(lower, c):
            if x != 0.0:  # a single one for UPGrad's p_i e_i
                q = [qj + x * cj for qj, cj in zip(q, row)]
        threshold = factor * max(max(map(abs, lower)), 1e-300)
        free = [j for j in indices if q[j] < 0.0]
        for round_ in range(3):
            s_free = _solve_positive_definite(
                [[c[i][j] for j in free] for i in free], [-q[i] for i in free]
            )
            if s_free is None:
                return None
            w = q
            for j, value in zip(free, s_free):
                w = [wk + value * ck for wk, ck in zip(w, c[j])]
            free_set = set(free)
            # On F: s >= -t and w = 0 up to t; off F: w >= -t. Written so that a NaN fails.
            wrong = [
                j
                for j, value in zip(free, s_free)
                if not (value >= -threshold and abs(w[j]) <= threshold)
            ]
            wrong += [j for j in indices if j not in free_set and not w[j] >= -threshold]
            if not wrong:
                break
            if round_ == 2:
                return None
            free = sorted(free_set.symmetric_difference(wrong))
        v = list(u)
        for j, value in zip(free, s_free):
            v[j] += max(value, 0.0) * r[j]
        solutions.append(v)
    return solutions


def _solve_positive_definite(a: list[list[float]], b: list[float]) -> list[float] | None:
    """
    Solves ``a x = b`` for a positive definite ``a`` by Gaussian elimination without pivoting
    (stable for such matrices), or returns ``None`` when a pivot is not positive.
    """

    k = len(b)
    rows = [row + [value] for row, value in zip(a, b)]
    for col in range(k):
        pivot_row = rows[col]
        pivot = pivot_row[col]
        if not pivot > 0.0:
            return None
        tail = pivot_row[col + 1 :]
        for row in rows[col + 1 :]:
            factor = row[col] / pivot
            if factor != 0.0:
                row[col + 1 :] = [x - factor * y for x, y in zip(row[col + 1 :], tail)]
    x = [0.0] * k
    for i in range(k - 1, -1, -1):
        row = rows[i]
        x[i] = (row[k] - sum(row[j] * x[j] for j in range(i + 1, k))) / row[i]
    return x

