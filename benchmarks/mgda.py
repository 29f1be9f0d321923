"""
MGDA weights: our exact solver against a Frank-Wolfe baseline that stops like torchjd 0.18's.

The baseline starts from uniform weights, moves towards the vertex ``e_t`` of smallest ``(G w)_t``
with the exact line search of ``w^T G w``, and stops when the step size is below ``epsilon = 1e-3``
or after ``max_iters = 100`` iterations, which is the published method (written here from its
description). For each m, both are timed on the same Gramians (interleaved rounds, one thread),
and the table gives the ratio of the times and how far each is from the optimum: the relative
optimality gap ``(w^T G w - min_i (G w)_i) / max_i G_ii`` (0 at the exact solution, up to rounding).

Run: ``PYTHONPATH=src python benchmarks/mgda.py`` (``--quick`` for fewer sizes and rounds).
"""

import argparse
import time
from collections.abc import Callable

import torch
from torch import Tensor

from torchjd.aggregation import MGDAWeighting


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


def gramians(kind: str, m: int, n: int) -> list[Tensor]:
    torch.manual_seed(m)
    result = []
    for _ in range(3):
        if kind == "gaussian":
            matrix = torch.randn(m, n)
        elif kind == "shared":  # rows sharing a component: the optimum has a small support
            matrix = torch.randn(m, n) + 3.0 * torch.randn(1, n) * torch.rand(m, 1)
        else:  # "m > n": 50 columns, the hull contains the origin from m = 51
            matrix = torch.randn(m, 50)
        result.append(matrix @ matrix.T)
    return result


def time_it(function: Callable[[Tensor], Tensor], inputs: list[Tensor], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for gramian in inputs:
            function(gramian)
        best = min(best, (time.perf_counter() - start) / len(inputs))
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes = [2, 8, 64, 512] if args.quick else [2, 3, 4, 8, 16, 32, 64, 128, 256, 512]
    rounds = 3 if args.quick else 7
    ours = MGDAWeighting()
    print("| Gramian | m | Frank-Wolfe (ms) | ours (ms) | ours / FW | FW gap | our gap |")
    print("|---|---|---|---|---|---|---|")
    for kind in ["gaussian", "shared", "m > n"]:
        for m in sizes:
            inputs = gramians(kind, m, 10000)
            baseline_times, our_times = [], []
            for _ in range(rounds):  # interleaved: the load of the machine hits both alike
                baseline_times.append(time_it(frank_wolfe_weights, inputs, 1))
                our_times.append(time_it(ours, inputs, 1))
            baseline, our = min(baseline_times), min(our_times)
            fw_gap = max(optimality_gap(g, frank_wolfe_weights(g)) for g in inputs)
            our_gap = max(optimality_gap(g, ours(g)) for g in inputs)
            print(
                f"| {kind} | {m} | {baseline * 1e3:.3f} | {our * 1e3:.3f} | "
                f"{our / baseline:.2f} | {fw_gap:.1e} | {our_gap:.1e} |"
            )


if __name__ == "__main__":
    main()
