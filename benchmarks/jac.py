"""
Time and peak memory of `torchjd.autojac.jac` against the two ways of computing a Jacobian with
plain PyTorch, measured in the same run: a loop of `torch.autograd.grad` (one call per output) and
one call of `torch.autograd.grad(..., is_grads_batched=True)`.

Run: python benchmarks/jac.py [--threads N] [--repeats K]
"""

import argparse
import gc
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from torchjd.autojac import jac

from _memory import peak_memory_mib  # benchmarks/_memory.py

WARMUP = 10


def make_mlp(m: int) -> tuple[nn.Module, Tensor]:
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, m))
    return model, torch.randn(32, 64)


def make_cnn(m: int) -> tuple[nn.Module, Tensor]:
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(32 * 16, m),
    )
    return model, torch.randn(8, 3, 16, 16)


def with_loop(outputs: Tensor, params: list[Tensor]) -> list[Tensor]:
    rows = [torch.autograd.grad(y, params, retain_graph=True) for y in outputs]
    return [torch.stack(r) for r in zip(*rows)]


def with_batched(outputs: Tensor, params: list[Tensor]) -> list[Tensor]:
    identity = torch.eye(len(outputs), dtype=outputs.dtype)
    return list(torch.autograd.grad(outputs, params, identity, is_grads_batched=True))


def with_jac(outputs: Tensor, params: list[Tensor]) -> list[Tensor]:
    return list(jac(outputs, params))


def measure(
    model: nn.Module, x: Tensor, methods: list[Callable], repeats: int
) -> list[tuple[float, float]]:
    """
    Median time (ms) of each method's Jacobian computation, and its peak memory (MiB). The methods
    are interleaved within each repeat so that they all see the same machine load.
    """

    params = list(model.parameters())
    times: list[list[float]] = [[] for _ in methods]
    for repeat in range(WARMUP + repeats):
        # The order rotates: whichever method runs right after another one's large results are
        # freed otherwise pays for it in every repeat.
        for offset in range(len(methods)):
            index = (repeat + offset) % len(methods)
            outputs = model(x).mean(dim=0)  # m outputs
            start = time.perf_counter()
            result = methods[index](outputs, params)
            elapsed = time.perf_counter() - start
            del result
            if repeat >= WARMUP:
                times[index].append(elapsed)
    results = []
    for index, method in enumerate(methods):
        outputs = model(x).mean(dim=0)
        gc.collect()
        peak = peak_memory_mib(lambda: method(outputs, params))
        results.append((statistics.median(times[index]) * 1e3, peak))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=200)
    arguments = parser.parse_args()
    # One thread by default: on a small shared machine, multi-threaded kernels on these small
    # models mostly measure the scheduler.
    torch.set_num_threads(arguments.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), median of {arguments.repeats}")
    header = f"{'model':<5} {'m':>3} | {'loop ms':>8} {'batched ms':>10} {'jac ms':>8} | {'jac/best':>8} | {'loop MiB':>8} {'batch MiB':>9} {'jac MiB':>8}"
    print(header)
    print("-" * len(header))
    for name, make in [("MLP", make_mlp), ("CNN", make_cnn)]:
        for m in [4, 16, 64]:
            model, x = make(m)
            (t_loop, mem_loop), (t_batched, mem_batched), (t_jac, mem_jac) = measure(
                model, x, [with_loop, with_batched, with_jac], arguments.repeats
            )
            ratio = t_jac / min(t_loop, t_batched)
            print(
                f"{name:<5} {m:>3} | {t_loop:>8.3f} {t_batched:>10.3f} {t_jac:>8.3f} | {ratio:>8.2f} | "
                f"{mem_loop:>8.2f} {mem_batched:>9.2f} {mem_jac:>8.2f}"
            )


if __name__ == "__main__":
    main()
