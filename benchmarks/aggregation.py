"""
Time of every aggregator of `torchjd.aggregation` that can be built with default arguments, on
random float32 Jacobians [m, 10000] on CPU, and UPGrad against the approach of the most used
implementation: the same m projections solved one vector at a time with `quadprog`, through numpy.

The baseline computes the same regularized Gramian as UPGrad (in torch), then calls
`quadprog.solve_qp` once per row (in float64) and applies the weights in torch. The table reports
the median time of each, their ratio and the largest relative difference of the aggregations.

Requires (for the baseline only): pip install quadprog numpy
Run: python benchmarks/aggregation.py [--threads N]

On a machine shared with other jobs, `--threads 1` avoids the stalls of a multi-threaded matrix
product waiting for a descheduled thread, which otherwise dominate the timings.
"""

import argparse
import inspect
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

import torchjd.aggregation as aggregation
from torchjd.aggregation import Aggregator, UPGrad

MS = [2, 8, 32, 128, 256]
N = 10000
MIN_REPEATS = 5
TARGET_SECONDS = 1.0  # time spent per measurement, at least MIN_REPEATS calls


def median_time(function: Callable[[], object]) -> float:
    function()  # warm-up
    times = []
    start = time.perf_counter()
    while len(times) < MIN_REPEATS or (
        time.perf_counter() - start < TARGET_SECONDS and len(times) < 200
    ):
        t0 = time.perf_counter()
        function()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def quadprog_upgrad(matrix: Tensor, norm_eps: float = 0.0001, reg_eps: float = 0.0001) -> Tensor:
    import numpy as np
    from quadprog import solve_qp

    gramian = matrix @ matrix.T
    trace = gramian.trace()
    m = gramian.shape[0]
    normalized = gramian / trace if trace >= norm_eps else torch.zeros_like(gramian)
    regularized = normalized + reg_eps * torch.eye(m, dtype=gramian.dtype)
    g = regularized.double().numpy()
    weights = np.zeros(m)
    identity = np.eye(m)
    zeros = np.zeros(m)
    for i in range(m):
        u = np.zeros(m)
        u[i] = 1.0 / m
        # quadprog: min 1/2 x^T G x - a^T x subject to C^T x >= b.
        weights += solve_qp(g, zeros, identity, u, 0)[0]
    return torch.from_numpy(weights).to(matrix.dtype) @ matrix


def default_aggregator_classes() -> tuple[dict[str, type[Aggregator]], list[str]]:
    """The concrete aggregators of `torchjd.aggregation` that build with no argument."""
    classes: dict[str, type[Aggregator]] = {}
    skipped: list[str] = []
    for name in aggregation.__all__:
        cls = getattr(aggregation, name)
        if not (inspect.isclass(cls) and issubclass(cls, Aggregator)) or inspect.isabstract(cls):
            continue
        try:
            cls()
        except Exception as error:  # noqa: BLE001 - a report, not a test
            skipped.append(f"{name} ({type(error).__name__})")
        else:
            classes[name] = cls
    return classes, skipped


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    matrices = {m: torch.randn(m, N) for m in MS}

    print(
        f"UPGrad against quadprog, one projection at a time (float32, CPU, n = {N}, threads = "
        f"{torch.get_num_threads()})"
    )
    print(
        f"{'m':>5} | {'UPGrad (ms)':>12} | {'quadprog (ms)':>13} | {'speed-up':>9} | {'max rel. diff':>13}"
    )
    upgrad = UPGrad()
    for m in MS:
        matrix = matrices[m]
        ours = median_time(lambda: upgrad(matrix))
        try:
            theirs = median_time(lambda: quadprog_upgrad(matrix))
            expected = quadprog_upgrad(matrix)
            difference = float((upgrad(matrix) - expected).abs().max() / expected.abs().max())
            print(
                f"{m:>5} | {ours * 1e3:>12.3f} | {theirs * 1e3:>13.3f} | {theirs / ours:>8.1f}x | {difference:>13.1e}"
            )
        except ImportError:
            print(f"{m:>5} | {ours * 1e3:>12.3f} | {'(no quadprog)':>13} |")

    classes, skipped = default_aggregator_classes()
    print()
    print(f"Every aggregator with default arguments (median ms, float32, CPU, n = {N})")
    print(f"{'aggregator':>16} | " + " | ".join(f"{f'm={m}':>9}" for m in MS))
    for name, cls in classes.items():
        cells = []
        for m in MS:
            try:
                # A fresh instance per m: stateful aggregators fix m at their first call.
                aggregator = cls()
                cells.append(f"{median_time(lambda: aggregator(matrices[m])) * 1e3:>9.3f}")
            except Exception as error:  # noqa: BLE001 - one failure must not stop the table
                cells.append(f"{type(error).__name__[:9]:>9}")
        print(f"{name:>16} | " + " | ".join(cells))
    if skipped:
        print("Not built with default arguments: " + ", ".join(skipped))


if __name__ == "__main__":
    main()
