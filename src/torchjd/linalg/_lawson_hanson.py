"""
The exact solvers of ``min y^T C y, y >= l`` (batched over the bounds ``l``) in the space of a
factor ``C = F F^T`` given by Cholesky with diagonal pivoting: the active-set method of Lawson and
Hanson (1974), and the closed form when the rows of ``F`` positively span their span.

With ``y = l + s``, the problem is the non-negative least-squares problem
``min ||F^T l + F_P^T s_P||²`` over ``s >= 0``, where ``F_P`` holds the rows of ``F`` of the
passive set ``P`` (``s > 0`` on ``P``, ``s = 0`` off it). Lawson and Hanson only ever add a
variable whose row is not in the span of ``F_P``, so ``|P|`` never exceeds the rank ``r`` of ``F``,
however many rows ``C`` has: a singular ``C`` (``m > n``, duplicated or opposite rows) costs no
more than its rank.

Every vector keeps the inverse of its ``M = C_PP = F_P F_P^T`` (``[K, K]`` with ``K`` the
largest ``|P|`` so far, unused slots holding the identity), which a variable entering or leaving
changes by one rank-one update. So a step costs one product with ``F`` ``[m, r]`` per vector (the
gradient ``C y = F (F^T y)``) and ``O(K²)`` for the update, instead of a new factorization of
``M``.
"""

import math

import torch
from torch import Tensor

# A row whose squared distance to the span of F_P is below this fraction of its squared norm does
# not enter P: it is in the span to the precision of the kept inverse, whose rank-one updates
# accumulate rounding (measured: a row of the span computed at 1.4e-13 after a few dozen updates).
_DEPENDENT = 1e-10
# Alternating projections tried before the exact search for a positive null combination.
_ALTERNATING_PROJECTIONS = 32
# A warm start keeps the entries of s above this fraction of the bound's magnitude.
_WARM_START_FRACTION = 1e-3
# The slots of a vector's passive set at first.
_FIRST_SLOTS = 16
# The memory of the [K, K] inverses (and as much for their temporaries) of the vectors solved
# together, in bytes.
_STATE_BUDGET = 256 * 2**20
# At most this many steps of iterative refinement per least-squares solve.
_REFINEMENT_STEPS = 4
# At most this many variables enter a vector's P in one step.
_BLOCK_SIZE = 4


def pivoted_cholesky(matrix: Tensor, threshold: float, max_rank: int) -> Tensor | None:
    """
    Returns ``F`` ``[m, r]`` with ``F F^T`` equal to the PSD ``matrix`` ``[m, m]`` up to the pivots
    below ``threshold``, by Cholesky with diagonal pivoting, or ``None`` when the rank exceeds
    ``max_rank``. Each dropped pivot bounds the diagonal of the residual ``matrix - F F^T`` (which
    is PSD when ``matrix`` is).
    """

    m = matrix.shape[0]
    residual = matrix.diagonal().clone()
    factor = matrix.new_zeros(m, min(max_rank, m))
    for k in range(min(max_rank, m) + 1):
        pivot = int(residual.argmax())
        value = float(residual[pivot])
        if not value > threshold:
            return factor[:, :k]
        if k == factor.shape[1]:
            return None
        column = (matrix[:, pivot] - factor[:, :k] @ factor[pivot, :k]) / math.sqrt(value)
        factor[:, k] = column
        residual -= column * column
        residual[pivot] = 0.0
    return factor


def solve_in_factor_space(
    factor: Tensor,
    lower: Tensor,
    tolerance: float,
    start: Tensor | None = None,
    max_steps: int | None = None,
) -> Tensor:
    """
    Returns ``y`` ``[B, m]`` solving ``min y^T F F^T y, y >= l`` for the factor ``F`` ``[m, r]``
    and the bounds ``l`` ``[B, m]`` (float64, or float32 on MPS), to the relative KKT tolerance
    ``tolerance``: per vector, ``(C y)_j >= -τ ν / 4`` off ``P`` with ``ν = max_j |l_j|`` and
    ``(C y)_j = 0`` on ``P`` up to rounding.

    The steps of the vectors are taken together. A vector whose gradient has negative entries adds
    its most negative one, and all of them at once while their count decreases (as block principal
    pivoting would); the solution ``z`` of the least-squares problem on ``P`` is then accepted when
    it is positive, and otherwise ``s`` moves towards it until a variable of ``P`` reaches 0, which
    leaves. Returns, per vector, the iterate of smallest KKT violation.

    With ``start`` ``[B, m]`` (e.g. an ADMM iterate, ``>= l``), each vector starts from ``P`` the
    clearly positive entries of ``start - l`` (its ``r`` largest at most), when ``F_P`` has full
    rank, and from ``P`` empty otherwise.
    """

    batch, m = lower.shape
    rank = factor.shape[1]
    if rank == 0:
        return lower.clamp(min=0.0)  # C = 0: s = max(-l, 0) makes y = max(l, 0)
    # The state of a vector is [r, 2 r] numbers: a batch above the memory budget goes in chunks.
    chunk = max(1, _STATE_BUDGET // (2 * rank * rank * factor.element_size()))
    if batch > chunk:
        return torch.cat(
            [
                solve_in_factor_space(
                    factor,
                    lower[i : i + chunk],
                    tolerance,
                    None if start is None else start[i : i + chunk],
                    max_steps,
                )
                for i in range(0, batch, chunk)
            ]
        )
    # The slots grow with the largest |P| (up to r): the work per step is [B, K, K].
    slots = min(rank, _FIRST_SLOTS)
    device, dtype = factor.device, factor.dtype

    gram = factor @ factor.T  # C = F F^T, whose entries every step reads
    q = lower @ gram  # C l, [B, m]
    nu = lower.abs().amax(dim=1)
    nu = torch.where(nu > 0, nu, torch.ones_like(nu))
    threshold = (tolerance / 4.0) * nu  # [B]

    variables = torch.full((batch, slots), -1, dtype=torch.long, device=device)  # -1: unused
    inverse = torch.eye(slots, dtype=dtype, device=device).repeat(batch, 1, 1)
    s = torch.zeros(batch, slots, dtype=dtype, device=device)  # s on the slots
    passive = torch.zeros(batch, m, dtype=torch.bool, device=device)
    rows = torch.arange(batch, device=device)

    done = torch.zeros(batch, dtype=torch.bool, device=device)
    searching = torch.ones(batch, dtype=torch.bool, device=device)  # else: moving back inside
    last_count = torch.full((batch,), m + 1, dtype=torch.long, device=device)
    best_y = lower.clone()
    best_violation = torch.full((batch,), math.inf, dtype=dtype, device=device)
    if start is not None:
        clearly_positive = (start - lower) > _WARM_START_FRACTION * nu[:, None]
        slots = min(rank, max(slots, int(clearly_positive.sum(dim=1).max())))
        variables, inverse, s = _grow(variables, inverse, s, slots)
        _warm_start(gram, lower, start, nu, variables, inverse, s, passive)
        # A warm-started s is not the least-squares solution on its P: solve before checking.
        searching = ~passive.any(dim=1)

    for _ in range(max_steps if max_steps is not None else 3 * m + 20):
        in_use = variables >= 0
        y = torch.cat([lower, lower.new_zeros(batch, 1)], dim=1)
        y = y.scatter_add(1, torch.where(in_use, variables, m), s)[:, :m]
        # The gradient C y, through the factor when it is thin.
        gradient = (y @ factor) @ factor.T if 2 * rank < m else y @ gram
        violation = _violation(gradient, y, lower, nu)
        better = violation < best_violation
        best_y = torch.where(better[:, None], y, best_y)
        best_violation = torch.where(better, violation, best_violation)

        candidates = ~passive & (gradient < -threshold[:, None])
        count = candidates.sum(dim=1)
        done = done | (searching & (count == 0))
        if bool(done.all()):
            break

        # Entering variables: the most negative entry, or a block of the most negative ones while
        # their count falls.
        adding = searching & ~done
        block = adding & (count < last_count)
        last_count = torch.where(adding, count, last_count)
        wanted = torch.where(block, count.clamp(max=_BLOCK_SIZE), 1) * adding
        needed = int(((variables >= 0).sum(dim=1) + wanted).max())
        if needed > slots and slots < rank:
            slots = min(rank, max(2 * slots, needed))
            variables, inverse, s = _grow(variables, inverse, s, slots)
        added = torch.zeros(batch, dtype=torch.long, device=device)
        tried = torch.zeros(batch, dtype=torch.long, device=device)
        while True:
            trying = (tried < wanted) & candidates.any(dim=1) & (variables < 0).any(dim=1)
            if not bool(trying.any()):
                break
            j = torch.where(candidates, gradient, math.inf).argmin(dim=1)
            candidates[rows, j] = False
            free_slot = (variables < 0).to(torch.int8).argmax(dim=1)
            accepted = _border(gram, variables, inverse, j, free_slot, trying)
            variables[accepted, free_slot[accepted]] = j[accepted]
            passive[rows[accepted], j[accepted]] = True
            added += accepted
            tried += trying
        # A vector that could add nothing is optimal to working precision.
        done = done | (adding & (added == 0))

        # The least-squares solution on P, then the move back inside s >= 0 where it is not.
        for _ in range(rank + 1):
            active = ~done
            in_use = variables >= 0
            rhs = -q.gather(1, variables.clamp(min=0)) * in_use  # -(C l)_P
            z = _refined_solve(gram, variables, inverse, rhs)
            bad = in_use & ~(z > 0.0) & active[:, None]
            moving = bad.any(dim=1)
            accept = active & ~moving
            s = torch.where(accept[:, None], torch.where(in_use, z, 0.0), s)
            searching = torch.where(active, accept, searching)
            if not bool(moving.any()):
                break
            ratios = torch.where(bad, s / (s - z).clamp(min=torch.finfo(dtype).tiny), math.inf)
            alpha = ratios.amin(dim=1, keepdim=True).clamp(max=1.0)
            leaving = torch.where(moving, ratios.argmin(dim=1), 0)
            moved = (s + alpha * (z - s)).clamp(min=0.0)
            s = torch.where(moving[:, None], moved, s)
            s[rows[moving], leaving[moving]] = 0.0
            # Every variable of P at 0 leaves, the first one to reach it included.
            while True:
                zero = (variables >= 0) & ~(s > 0.0) & moving[:, None]
                if not bool(zero.any()):
                    break
                has = zero.any(dim=1)
                slot = zero.to(torch.int8).argmax(dim=1)
                passive[rows[has], variables[rows[has], slot[has]]] = False
                _unborder(inverse, slot, has)
                variables[rows[has], slot[has]] = -1
                s[rows[has], slot[has]] = 0.0
    return best_y


def _grow(
    variables: Tensor, inverse: Tensor, s: Tensor, slots: int
) -> tuple[Tensor, Tensor, Tensor]:
    """The state of :func:`solve_in_factor_space` with ``slots`` slots, the new ones unused."""

    extra = slots - variables.shape[1]
    if extra <= 0:
        return variables, inverse, s
    pad = torch.nn.functional.pad
    grown = pad(inverse, (0, extra, 0, extra))
    grown.diagonal(dim1=1, dim2=2)[:, -extra:] = 1.0
    return pad(variables, (0, extra), value=-1), grown, pad(s, (0, extra))


def _block(gram: Tensor, variables: Tensor) -> Tensor:
    """``M = C_PP`` ``[B, K, K]`` over the slots, with the identity on the unused ones."""

    index = variables.clamp(min=0)
    in_use = variables >= 0
    both = in_use[:, :, None] & in_use[:, None, :]
    eye = torch.eye(variables.shape[1], dtype=gram.dtype, device=gram.device)
    return torch.where(both, gram[index[:, :, None], index[:, None, :]], eye)


def _warm_start(
    gram: Tensor,
    lower: Tensor,
    start: Tensor,
    nu: Tensor,
    variables: Tensor,
    inverse: Tensor,
    s: Tensor,
    passive: Tensor,
) -> None:
    """Fills the state of :func:`solve_in_factor_space` from ``start``, in place."""

    slots = variables.shape[1]
    gap = (start - lower).clamp(min=0.0)
    values, order = gap.topk(min(slots, gap.shape[1]), dim=1)
    keep = values > _WARM_START_FRACTION * nu[:, None]
    chosen = torch.where(keep, order, -1)
    cholesky, info = torch.linalg.cholesky_ex(_block(gram, chosen))
    condition = cholesky.diagonal(dim1=1, dim2=2).amin(dim=1) ** 2
    usable = (info == 0) & (condition > _DEPENDENT)
    if not bool(usable.any()):
        return
    k = chosen.shape[1]
    variables[usable, :k] = chosen[usable]
    inverse[usable, :k, :k] = torch.cholesky_inverse(cholesky[usable])
    s[usable, :k] = (values * keep)[usable]
    vector = torch.arange(len(usable), device=usable.device)[:, None].expand_as(chosen)
    taken = keep & usable[:, None]
    passive[vector[taken], chosen[taken]] = True


def _violation(gradient: Tensor, y: Tensor, lower: Tensor, nu: Tensor) -> Tensor:
    """The relative KKT violation of each vector, as in :func:`._pivoting._kkt_violation`."""

    scale = torch.maximum(nu, y.abs().amax(dim=1))[:, None]
    negative_part = (-gradient).clamp(min=0.0) / scale
    complementarity = gradient.abs() * (y - lower) / (scale * scale)
    return torch.maximum(negative_part, complementarity).amax(dim=1)


def _border(
    gram: Tensor, variables: Tensor, inverse: Tensor, j: Tensor, slot: Tensor, mask: Tensor
) -> Tensor:
    """
    Takes variable ``j[b]`` into the unused ``slot[b]`` of the inverse of every vector ``b`` of
    ``mask`` where its row is not in the span of ``F_P``, in place (bordering: with
    ``c = C_{P j}``, ``b = M^{-1} c`` and ``σ = C_jj - c^T b``, the new inverse is
    ``M^{-1} + (b - e) (b - e)^T / σ`` with ``e`` the slot's basis vector, whose 1 on the diagonal
    the unused slot held). Returns the vectors that took it; the caller records ``j`` in
    ``variables``.
    """

    batch = len(slot)
    rows = torch.arange(batch, device=slot.device)
    coupling = gram[variables.clamp(min=0), j[:, None]] * (variables >= 0)  # C_{P j} [B, K]
    b = torch.bmm(inverse, coupling[:, :, None])[:, :, 0]
    norm = gram[j, j]
    sigma = norm - (coupling * b).sum(dim=1)  # squared distance of f_j to span(F_P)
    # sigma is a difference of terms up to |c| |b|: below their rounding, f_j is in the span.
    rounding = 64.0 * torch.finfo(sigma.dtype).eps * (coupling.abs() * b.abs()).sum(dim=1)
    taken = mask & (sigma > _DEPENDENT * norm + rounding)
    b[rows, slot] -= 1.0
    weight = torch.where(taken, 1.0 / torch.where(taken, sigma, 1.0), 0.0)
    inverse.baddbmm_((b * weight[:, None])[:, :, None], b[:, None, :])
    inverse[rows, slot, slot] -= taken.to(inverse.dtype)
    return taken


def _unborder(inverse: Tensor, slot: Tensor, mask: Tensor) -> None:
    """Empties ``slot[b]`` of the inverse of every vector ``b`` of ``mask``, in place."""

    rows = torch.arange(len(slot), device=slot.device)
    column = inverse[rows, :, slot]  # [B, K]
    pivot = column[rows, slot]
    weight = torch.where(mask, -1.0 / torch.where(mask, pivot, 1.0), 0.0)
    inverse.baddbmm_((column * weight[:, None])[:, :, None], column[:, None, :])
    inverse[rows, slot, slot] += mask.to(inverse.dtype)  # an unused slot holds the identity


def _refined_solve(gram: Tensor, variables: Tensor, inverse: Tensor, rhs: Tensor) -> Tensor:
    """
    ``M^{-1} rhs`` on ``M = C_PP`` (unused slots: I) by the kept inverse and iterative refinement:
    rows close to dependent (down to :data:`_DEPENDENT`) make the inverse inaccurate, and each step
    gains about ``cond(M) eps``, so a few steps reach the rounding level.
    """

    block = _block(gram, variables)
    target = rhs[:, :, None]
    z = torch.bmm(inverse, target)
    enough = 8.0 * torch.finfo(rhs.dtype).eps * max(float(rhs.abs().max()), 1e-300)
    for _ in range(_REFINEMENT_STEPS):
        residual = target - torch.bmm(block, z)
        if float(residual.abs().max()) <= enough:
            break
        z = z + torch.bmm(inverse, residual)
    return z[:, :, 0]


def solve_by_positive_null_combination(
    factor: Tensor, lower: Tensor, tolerance: float
) -> Tensor | None:
    """
    Returns ``y = t y*`` ``[B, m]`` with ``t = max(0, max_j l_j / y*_j)`` per vector when a
    combination ``y* >= 1`` of all the rows has ``F^T y* = 0``, else ``None``.

    Such a ``y*`` means that the rows positively span their span (``m > n`` rows in general
    position, or rows summing to zero): the dual cone is then the orthogonal complement of the rows,
    every projection is zero, and ``t y*`` is an exact solution (``C y = 0``, ``y >= l``). Finding
    ``y*``, or learning that there is none, is one problem ``min y^T C y, y >= 1``, whose minimum
    is zero exactly when ``y*`` exists. It is first sought by alternating projections from the
    all-ones vector, which find it in a few cheap steps when the rows are many more than the rank
    or sum to zero; when their distance stalls instead, ``y*`` most likely does not exist and
    ``None`` is returned without the exact search (the caller's general path is exact too).
    """

    m = factor.shape[0]
    ones = torch.ones(m, dtype=factor.dtype, device=factor.device)
    # Alternating projections onto {y >= 1} and onto the null space of F^T (with an orthonormal
    # basis Q of the range of F: y - Q Q^T y) reach their intersection when it is not empty; the
    # first iterate that is positive, divided by its smallest entry, is a combination y*.
    q, _ = torch.linalg.qr(factor)
    combination = None
    guess = ones
    distances = []  # from the null space to {y >= 1}, which shrink to 0 when they intersect
    for _ in range(_ALTERNATING_PROJECTIONS):
        guess = guess - q @ (q.mT @ guess)
        smallest = float(guess.min())
        if smallest > 0.0:
            combination = guess / smallest
            break
        clamped = guess.clamp(min=1.0)
        distances.append(float((clamped - guess).norm()))
        guess = clamped
    if combination is None or not _is_null_combination(factor, combination, tolerance):
        half = len(distances) // 2
        if distances and distances[-1] > 0.5 * distances[half]:
            # The distance stalls: the sets are (most likely) apart, which the exact search below
            # would only confirm at the cost of an active set of the rank's size.
            return None
        combination = solve_in_factor_space(factor, ones[None, :], tolerance)[0]
        if not _is_null_combination(factor, combination, tolerance):
            return None
    t = (lower / combination).amax(dim=1, keepdim=True).clamp(min=0.0)
    return t * combination


def _is_null_combination(factor: Tensor, combination: Tensor, tolerance: float) -> bool:
    """Whether ``C y* = 0`` within the tolerance, so that ``C (t y*)`` is for every ``t >= 0``."""

    gradient = factor @ (combination @ factor)
    return float(gradient.abs().max()) <= tolerance / 4.0 * float(combination.abs().max())
