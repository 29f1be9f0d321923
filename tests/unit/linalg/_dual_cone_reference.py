"""Independent references for the dual-cone projection: brute force over active sets and KKT."""

import itertools

import torch
from torch import Tensor


def brute_force_projection(gramian: Tensor, u: Tensor) -> tuple[Tensor, float]:
    """
    Solves ``min v^T G v, v >= u`` for one vector ``u`` ``[m]`` (small ``m``) in float64 by trying
    every set ``F`` of free variables: ``v_A = u_A`` and ``v_F`` the least-squares solution of
    ``G_FF v_F = -G_FA u_A``. A candidate that satisfies the KKT conditions is a minimizer. Returns
    one minimizer and the optimal value.
    """

    g = gramian.to(torch.float64)
    u = u.to(torch.float64)
    m = g.shape[0]
    scale = max(float(g.diagonal().max()), 1e-300)
    best: tuple[Tensor, float] | None = None
    for size in range(m + 1):
        for free in itertools.combinations(range(m), size):
            free_idx = list(free)
            active_idx = [i for i in range(m) if i not in free]
            v = u.clone()
            if free_idx:
                g_ff = g[free_idx][:, free_idx]
                rhs = (
                    -(g[free_idx][:, active_idx] @ u[active_idx])
                    if active_idx
                    else torch.zeros(size, dtype=g.dtype)
                )
                v[free_idx] = torch.linalg.lstsq(g_ff, rhs[:, None], driver="gelsd").solution[:, 0]
            w = g @ v
            nu = max(float(v.abs().max()), 1.0)
            tol = 1e-9 * scale * nu
            ok = bool((v >= u - 1e-9 * nu).all()) and bool((w >= -tol).all())
            if free_idx:
                ok = ok and bool((w[free_idx].abs() <= tol).all())
            if ok:
                value = float(v @ g @ v)
                if best is None or value < best[1]:
                    best = (v, value)
    assert best is not None, "no active set satisfies the KKT conditions"
    return best


def kkt_violations(gramian: Tensor, u: Tensor, v: Tensor) -> tuple[bool, float, float]:
    """
    Returns (``v >= u`` everywhere, the largest ``max(-(G v)_i, 0) / (s ν)``, the largest
    ``|(G v)_i (v_i - u_i)| / (s ν²)``), with ``s = max G_ii`` and ``ν = max(max |v_i|, max |u_i|)``
    per vector:
    the quantities that the projector's documented guarantee bounds. Computed in float64.
    """

    g = gramian.to(torch.float64)
    u = u.to(torch.float64).reshape(-1, g.shape[0])
    v = v.to(torch.float64).reshape(-1, g.shape[0])
    scale = float(g.diagonal().max())
    if scale == 0.0:
        return bool((v >= u).all()), 0.0, 0.0
    w = v @ g
    nu = torch.maximum(v.abs().amax(dim=1, keepdim=True), u.abs().amax(dim=1, keepdim=True))
    nu = torch.where(nu > 0, nu, torch.ones_like(nu))
    negative = float(((-w).clamp(min=0.0) / (scale * nu)).max())
    complementarity = float(((w * (v - u)).abs() / (scale * nu * nu)).max())
    return bool((v >= u).all()), negative, complementarity
