"""
The projection ``v = argmin_{v >= u} v^T H v`` shared by the projectors of this package, with
``H = G`` (exact) or ``H = G / tr(G) + reg_eps I`` with ``G`` treated as zero when
``tr(G) < norm_eps`` (the regularized problem of torchjd 0.18): checks, non-finite inputs, the
small-``m`` fast paths and the general solver of :mod:`._pivoting`.

With ``norm_eps = reg_eps = 0`` both forms have the same minimizers (they do not depend on the
scale of ``G``), so one code path serves both.
"""

import math

import torch
from torch import Tensor

from ._pivoting import (
    DIRECT_PIVOTING_MAX_SIZE,
    project_regularized,
    solve_general,
    solve_pair,
    sum_of_basis_projections as pivoted_sum_of_basis_projections,
)
from ._projector import check_basis_weights, check_projection_inputs
from ._python_floats import project_in_python

# Up to this many batch * m * m, Python floats beat the ~20 tensor operations of the tensor path on
# CPU (measured, the two timed in turn: UPGrad up to m = 6, so DualProj up to m = 14).
_PYTHON_MAX_WORK = 216


def work_dtype(device: torch.device) -> torch.dtype:
    """The dtype of the ``m x m`` work: float64 where the device has it."""

    return torch.float64 if device.type != "mps" else torch.float32


def _all_finite(rows: list[list[float]]) -> bool:
    return all(math.isfinite(x) for row in rows for x in row)


def _nan(shape: torch.Size | tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


def project(U: Tensor, G: Tensor, norm_eps: float, reg_eps: float, tolerance: float) -> Tensor:
    """
    Returns the solutions ``[..., m]`` for ``U`` ``[..., m]``, in the dtype that ``U`` and ``G``
    promote to, on the device of ``G``. NaN when ``U`` or ``G`` holds a NaN or an infinite value.
    """

    check_projection_inputs(U, G)
    U = U.detach()  # nothing here is differentiated through
    G = G.detach()
    out_dtype = torch.promote_types(U.dtype, G.dtype)
    m = G.shape[0]
    flat = U.reshape(-1, m)
    if flat.shape[0] == 0 or m == 0:
        return torch.zeros(U.shape, dtype=out_dtype, device=G.device)

    if G.device.type == "cpu" and 2 <= m and flat.shape[0] * m * m <= _PYTHON_MAX_WORK:
        g = G.tolist()
        u = flat.tolist()
        if not (_all_finite(g) and _all_finite(u)):
            return _nan(U.shape, out_dtype, G.device)
        trace = sum(g[i][i] for i in range(m))
        if not trace > 0.0 or trace < norm_eps:
            # H = reg_eps I (or 0): v = max(u, 0) is a minimizer.
            return flat.clamp(min=0.0).to(out_dtype).reshape(U.shape)
        if math.isfinite(trace):
            values = project_in_python(g, trace, reg_eps, u, tolerance)
            if values is not None:
                return torch.tensor(values, dtype=out_dtype).reshape(U.shape)

    dtype = work_dtype(G.device)
    g = G.to(dtype)
    u = flat.to(dtype=dtype, device=G.device)
    if not (bool(torch.isfinite(g).all()) and bool(torch.isfinite(u).all())):
        return _nan(U.shape, out_dtype, G.device)
    v = _solve(g, u, norm_eps, reg_eps, tolerance, rank_threshold(G.dtype))
    return v.to(out_dtype).reshape(U.shape)


def rank_threshold(dtype: torch.dtype) -> float:
    """
    The pivot below which a direction of the unit-diagonal Gramian counts as zero: 256 times the
    machine epsilon of the dtype in which the Gramian was given (float32's for lower precisions),
    above the rounding of its entries (measured: 4 to 13 eps for float32 Gramians of 50 to 400
    columns) and far below a row's distance to the span of the others that matters.
    """

    if dtype not in (torch.float32, torch.float64):
        dtype = torch.float32
    return 256.0 * torch.finfo(dtype).eps


def _solve(
    g: Tensor, u: Tensor, norm_eps: float, reg_eps: float, tolerance: float, threshold: float
) -> Tensor:
    """The tensor path, for finite ``g`` ``[m, m]`` and ``u`` ``[B, m]`` in the working dtype."""

    m = g.shape[0]
    if m == 1:
        # h v² with v >= u: v = max(u, 0) is a minimizer whatever h >= 0 is.
        return u.clamp(min=0.0)
    trace = float(torch.diagonal(g).sum())
    if not trace > 0.0 or trace < norm_eps:
        return u.clamp(min=0.0)
    if m <= DIRECT_PIVOTING_MAX_SIZE and math.isfinite(trace):
        v = project_regularized(g, trace, reg_eps, u, tolerance)
        if v is not None:
            return v
    if norm_eps > 0.0 or reg_eps > 0.0:
        h = g / trace + reg_eps * torch.eye(m, dtype=g.dtype, device=g.device)
    else:
        h = g  # the minimizers do not depend on the scale of G
    if m == 2:
        return solve_pair(h, u)
    return solve_general(h, u, tolerance, threshold)


def sum_of_basis_projections(
    weights: Tensor, G: Tensor, norm_eps: float, reg_eps: float, tolerance: float
) -> Tensor:
    """
    Returns ``Σ_i v^(i)`` ``[m]`` with ``v^(i)`` the solution for ``u = weights_i e_i``: the UPGrad
    weights, with fast paths specialized to these bounds.
    """

    check_basis_weights(weights, G)
    weights = weights.detach()
    G = G.detach()
    out_dtype = torch.promote_types(weights.dtype, G.dtype)
    m = G.shape[0]
    if m == 0:
        return torch.zeros(0, dtype=out_dtype, device=G.device)
    if m == 2:
        return _two_row_weights(weights, G, norm_eps, reg_eps, out_dtype)
    if G.device.type == "cpu" and 3 <= m and m**3 <= _PYTHON_MAX_WORK:
        g = G.tolist()
        p = weights.tolist()
        if not (_all_finite(g) and _all_finite([p])):
            return _nan((m,), out_dtype, G.device)
        trace = sum(g[i][i] for i in range(m))
        if not trace > 0.0 or trace < norm_eps:
            return weights.clamp(min=0.0).to(out_dtype)
        if math.isfinite(trace):
            basis = [[p[i] if j == i else 0.0 for j in range(m)] for i in range(m)]
            values = project_in_python(g, trace, reg_eps, basis, tolerance)
            if values is not None:
                return torch.tensor([sum(column) for column in zip(*values)], dtype=out_dtype)
    elif 3 <= m <= DIRECT_PIVOTING_MAX_SIZE:
        dtype = work_dtype(G.device)
        g = G.to(dtype)
        p = weights.to(dtype=dtype, device=G.device)
        if not (bool(torch.isfinite(g).all()) and bool(torch.isfinite(p).all())):
            return _nan((m,), out_dtype, G.device)
        trace = float(torch.diagonal(g).sum())
        if not trace > 0.0 or trace < norm_eps:
            return p.clamp(min=0.0).to(out_dtype)
        if math.isfinite(trace):
            w = pivoted_sum_of_basis_projections(g, trace, reg_eps, p, tolerance)
            if w is not None:
                return w.to(out_dtype)
    basis = torch.diag(weights.to(device=G.device))
    return project(basis, G, norm_eps, reg_eps, tolerance).sum(dim=0)


def _two_row_weights(
    weights: Tensor, G: Tensor, norm_eps: float, reg_eps: float, out_dtype: torch.dtype
) -> Tensor:
    """
    Closed form of the UPGrad weights for ``m = 2``. With ``H`` the (regularized) Gramian, the
    solution for ``u = p_1 e_1`` is ``0`` if ``p_1 <= 0`` and otherwise
    ``v = (p_1, p_1 max(0, -H_12) / H_22)``: once ``v_1 = p_1`` is fixed, ``v_2`` minimizes
    ``v^T H v`` over ``v_2 >= 0``, and ``v_1`` cannot go below its bound while lowering the
    objective. Symmetrically for ``u = p_2 e_2``, so ``w = p⁺ + flip(p⁺) max(0, -H_12) / diag(H)``.
    In Python floats on CPU, where reading six numbers costs less than a dozen tensor operations.
    """

    if G.device.type == "cpu":
        (g11, g12), (g21, g22) = G.tolist()
        p1, p2 = weights.tolist()
        if not all(math.isfinite(x) for x in (g11, g12, g21, g22, p1, p2)):
            return _nan((2,), out_dtype, G.device)
        trace = g11 + g22
        conflict = max(-(g12 + g21) / 2.0, 0.0) if trace >= norm_eps and trace > 0.0 else 0.0
        ridge = reg_eps * trace if reg_eps > 0.0 else 0.0
        p1, p2 = max(p1, 0.0), max(p2, 0.0)
        w1 = p1 + p2 * conflict / max(g11 + ridge, 1e-300)
        w2 = p2 + p1 * conflict / max(g22 + ridge, 1e-300)
        return torch.tensor([w1, w2], dtype=out_dtype)
    dtype = work_dtype(G.device)
    g = G.to(dtype)
    p = weights.to(dtype=dtype, device=G.device).clamp(min=0.0)
    diagonal = torch.diagonal(g)
    trace = diagonal.sum()
    off_diagonal = (g[0, 1] + g[1, 0]) / 2.0
    keep = (trace >= norm_eps) & (trace > 0.0)
    conflict = torch.where(keep, (-off_diagonal).clamp(min=0.0), 0.0)
    ridge = reg_eps * trace if reg_eps > 0.0 else torch.zeros_like(trace)
    denominator = (diagonal + ridge).clamp(min=torch.finfo(dtype).tiny)
    w = torch.addcmul(p, p.flip(0), conflict / denominator)
    # A NaN or infinite input gives NaN weights (NaN + anything is NaN).
    finite = torch.isfinite(g).all() & torch.isfinite(p).all()
    return torch.where(finite, w, float("nan")).to(out_dtype)
