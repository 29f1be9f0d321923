"""
The small problems of :mod:`._pivoting` in Python floats (float64): on CPU, for a few tiny
problems, reading the numbers once costs less than the ~20 tensor operations of the tensor path.
"""

import math

import torch


def project_in_python(
    gramian: list[list[float]],
    trace: float,
    ridge: float,
    vectors: list[list[float]],
    tolerance: float,
) -> list[list[float]] | None:
    """
    :func:`project_regularized` in Python floats (float64), for a few small problems on CPU,
    where reading the numbers once costs less than the tensor operations: the same unit-diagonal
    ``C``, first free set ``{i : (C l)_i < 0}`` and three rounds of pivoting, with each
    ``C_FF s_F = -q_F`` solved by elimination and the KKT conditions checked on the computed
    ``w = q + C s``. Returns ``None`` when a vector does not converge (or ``C_FF`` is not positive
    definite to working precision), like :func:`._pivoting.project_regularized`.
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
