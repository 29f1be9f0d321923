"""
MGDA weights: our exact solver against a Frank-Wolfe baseline that stops like torchjd 0.18's.

The baseline starts from uniform weights, moves towards the vertex ``e_t`` of smallest ``(G w)_t``
with the exact line search of ``w^T G w``, and stops when the step size is below ``epsilon = 1e-3``
or after ``max_iters = 100`` iterations, which is the published method (written here from its
description). For each kind of Gramian and each m, both are timed on the same three float32
Gramians (interleaved rounds, one thread, the median over rounds of the mean time per Gramian),
and the table gives the ratio of the times and how far each is from the optimum: the relative
optimality gap ``max over the three of (w^T G w - min_i (G w)_i) / max_i G_ii``, in float64 (0 at
the exact solution; rounding the weights to float32 alone leaves about 1e-8).

Kinds of ``J`` (``G = J J^T``):

- ``gaussian``: ``[m, 10000]`` standard normal, rows far from parallel (every row has weight).
- ``m > n``: ``[m, 50]``, rank-deficient from ``m = 51`` on, when the hull contains the origin.
- ``low rank``: ``[m, r] @ [r, 10000]`` with ``r = max(1, m // 4)``.
- ``duplicated``: ``m / 2`` Gaussian rows ``[·, 10000]``, each twice (a singular Gramian).
- ``origin``: Gaussian rows, the second half ``-c_i`` times the first (``c_i`` uniform in
  ``[0, 1]``): opposite objectives, so the hull contains the origin with many optimal weights.
- ``shared``: Gaussian rows plus a common component of random size, so that the optimum has a
  small support.

Run: ``PYTHONPATH=src python benchmarks/mgda.py`` (``--quick`` for fewer sizes and rounds;
``--kinds`` and ``--sizes`` to pick some).
"""

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from torchjd.aggregation import MGDAWeighting

KINDS = ["gaussian", "m > n", "low rank", "duplicated", "origin", "shared"]
SIZES = [2, 3, 4, 8, 16, 32, 64, 128, 256, 512]


def frank_wolfe_weights(gramian: Tensor, epsilon: float = 1e-3, max_iters: int = 100) -> Tensor:
    m = gramian.shape[0]
    weights = torch.full((m,), 1.0 / m, dtype=gramian.dtype)
    for _ in range(max_iters):
        t = int(torch.argmin(gramian @ weights))
        vertex = torch.zeros(m, dtype=gramian.dtype)
        vertex[t] = 1.0
        a = weights @ gramian[:, t]  # w^T G e_t
        b = weights @ gramian @ weights  # w^T G w
        c = gramian[t, t]  # e_t^T G e_t
        if c <= a:
            gamma = 1.0
        elif b <= a:
            gamma = 0.0
        else:
            gamma = float((b - a) / (b + c - 2 * a))
        weights = (1 - gamma) * weights + gamma * vertex
        if gamma < epsilon:
            break
    return weights


def optimality_gap(gramian: Tensor, weights: Tensor) -> float:
    gradient = gramian.double() @ weights.double()
    value = weights.double() @ gradient
    return float((value - gradient.min()) / gramian.diagonal().max())


def jacobian(kind: str, m: int) -> Tensor:
    if kind == "gaussian":
        return torch.randn(m, 10000)
    if kind == "m > n":
        return torch.randn(m, 50)
    if kind == "low rank":
        rank = max(1, m // 4)
        return torch.randn(m, rank) @ torch.randn(rank, 10000)
    if kind == "duplicated":
        return torch.randn((m + 1) // 2, 10000).repeat(2, 1)[:m]
    if kind == "origin":
        matrix = torch.randn(m, 10000)
        half = m // 2
        matrix[half : 2 * half] = -torch.rand(half, 1) * matrix[:half]
        return matrix
    # "shared"
    return torch.randn(m, 10000) + 3.0 * torch.randn(1, 10000) * torch.rand(m, 1)


def gramians(kind: str, m: int) -> list[Tensor]:
    torch.manual_seed(m)
    return [matrix @ matrix.T for matrix in (jacobian(kind, m) for _ in range(3))]


def mean_time(function: Callable[[Tensor], Tensor], inputs: list[Tensor]) -> float:
    start = time.perf_counter()
    for gramian in inputs:
        function(gramian)
    return (time.perf_counter() - start) / len(inputs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=KINDS)
    parser.add_argument("--sizes", nargs="+", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes = args.sizes or ([2, 8, 64, 512] if args.quick else SIZES)
    rounds = 3 if args.quick else 7
    ours = MGDAWeighting()
    print("| Gramian | m | Frank-Wolfe (ms) | ours (ms) | ours / FW | FW gap | our gap |")
    print("|---|---|---|---|---|---|---|")
    for kind in args.kinds:
        for m in sizes:
            inputs = gramians(kind, m)
            for gramian in inputs:  # warm-up
                ours(gramian)
                frank_wolfe_weights(gramian)
            baseline_times, our_times = [], []
            for _ in range(rounds):  # interleaved: the load of the machine hits both alike
                baseline_times.append(mean_time(frank_wolfe_weights, inputs))
                our_times.append(mean_time(ours, inputs))
            baseline, our = statistics.median(baseline_times), statistics.median(our_times)
            fw_gap = max(optimality_gap(g, frank_wolfe_weights(g)) for g in inputs)
            our_gap = max(optimality_gap(g, ours(g)) for g in inputs)
            print(
                f"| {kind} | {m} | {baseline * 1e3:.3f} | {our * 1e3:.3f} | "
                f"{our / baseline:.2f} | {fw_gap:.1e} | {our_gap:.1e} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
