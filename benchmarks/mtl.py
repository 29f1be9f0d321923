"""
Time and peak memory of one multi-task step (`mtl_backward` + `jac_to_grad` + `optimizer.step()`)
against the same Jacobian step written by hand with `torch.autograd`, and against the plain
sum-of-losses step, all measured in the same run.

The hand-written step, in its two forms: batched (one backward through the heads to the features,
batched over the tasks with `is_grads_batched`, then one batched vector-Jacobian product through the
trunk) and looped (one `torch.autograd.grad` per task through its head, then one per task through
the trunk); then the aggregation (the mean of the rows for Mean, `UPGrad()` on the concatenated
matrix for UPGrad). "best" is the faster of the two, per row.

With one thread (the default), times are the process's CPU time, which other processes' load on a
shared machine does not inflate; with more threads, wall-clock time.

Run: python benchmarks/mtl.py [--threads N] [--repeats K] [--trunks MLP CNN] [--tasks 2 4 10 40]
"""

import argparse
import gc
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from torchjd.aggregation import Aggregator, Mean, UPGrad
from torchjd.autojac import jac_to_grad, mtl_backward

from _memory import peak_memory_mib  # benchmarks/_memory.py

WARMUP = 10  # More than the calls that torchjd times before it chooses a strategy.


def make_mlp() -> tuple[nn.Module, Tensor]:
    trunk = nn.Sequential(
        nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU()
    )
    return trunk, torch.randn(64, 128)


def make_cnn() -> tuple[nn.Module, Tensor]:
    trunk = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 256),
        nn.ReLU(),
    )
    return trunk, torch.randn(16, 3, 32, 32)


class Problem:
    """A trunk with ``n_tasks`` linear heads, each with its own regression loss."""

    def __init__(self, make_trunk: Callable[[], tuple[nn.Module, Tensor]], n_tasks: int):
        self.trunk, self.x = make_trunk()
        n_features = self.trunk(self.x).shape[1]
        self.heads = nn.ModuleList(nn.Linear(n_features, 1) for _ in range(n_tasks))
        self.targets = torch.randn(n_tasks, self.x.shape[0], 1)
        self.trunk_params = list(self.trunk.parameters())
        self.head_params = list(self.heads.parameters())
        self.optimizer = torch.optim.SGD(self.trunk_params + self.head_params, lr=1e-4)

    def forward(self) -> tuple[Tensor, list[Tensor]]:
        features = self.trunk(self.x)
        losses = [
            nn.functional.mse_loss(head(features), target)
            for head, target in zip(self.heads, self.targets)
        ]
        return features, losses

    def step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def ours(problem: Problem, aggregator: Aggregator) -> None:
    features, losses = problem.forward()
    mtl_backward(losses, features)
    jac_to_grad(problem.trunk_params, aggregator)
    problem.step()


def by_hand(problem: Problem, aggregator: Aggregator) -> None:
    features, losses = problem.forward()
    n_tasks = len(losses)
    identity = torch.eye(n_tasks, dtype=features.dtype)
    feature_jac, *head_jacs = torch.autograd.grad(
        torch.stack(losses), [features] + problem.head_params, identity, is_grads_batched=True
    )
    for param, jacobian in zip(problem.head_params, head_jacs):
        param.grad = jacobian.sum(dim=0)
    trunk_jacs = torch.autograd.grad(
        features, problem.trunk_params, feature_jac, is_grads_batched=True
    )
    _aggregate_by_hand(problem, aggregator, list(trunk_jacs))


def loop_by_hand(problem: Problem, aggregator: Aggregator) -> None:
    features, losses = problem.forward()
    feature_grads = []
    for loss, head in zip(losses, problem.heads):
        params = list(head.parameters())
        feature_grad, *head_grads = torch.autograd.grad(loss, [features] + params)
        for param, gradient in zip(params, head_grads):
            param.grad = gradient
        feature_grads.append(feature_grad)
    rows = [
        torch.autograd.grad(
            features, problem.trunk_params, grad, retain_graph=index < len(feature_grads) - 1
        )
        for index, grad in enumerate(feature_grads)
    ]
    trunk_jacs = [torch.stack(column) for column in zip(*rows)]
    del rows
    _aggregate_by_hand(problem, aggregator, trunk_jacs)


def _aggregate_by_hand(problem: Problem, aggregator: Aggregator, trunk_jacs: list[Tensor]) -> None:
    n_tasks = trunk_jacs[0].shape[0]
    if isinstance(aggregator, Mean):
        for param, jacobian in zip(problem.trunk_params, trunk_jacs):
            param.grad = jacobian.mean(dim=0)
    else:
        matrix = torch.cat([jacobian.reshape(n_tasks, -1) for jacobian in trunk_jacs], dim=1)
        trunk_jacs.clear()
        vector = aggregator(matrix)
        del matrix
        sizes = [param.numel() for param in problem.trunk_params]
        for param, gradient in zip(problem.trunk_params, vector.split(sizes)):
            param.grad = gradient.view(param.shape)
    problem.step()


def sum_of_losses(problem: Problem, aggregator: Aggregator) -> None:
    _, losses = problem.forward()
    torch.stack(losses).sum().backward()
    problem.step()


def measure(
    problem: Problem, steps: list[Callable[[], None]], repeats: int, clock: Callable[[], float]
) -> list[tuple[float, float]]:
    """Median time (ms) and peak memory (MiB) of each step, interleaved within each repeat."""

    times: list[list[float]] = [[] for _ in steps]
    for repeat in range(WARMUP + repeats):
        for offset in range(len(steps)):
            index = (repeat + offset) % len(steps)
            start = clock()
            steps[index]()
            elapsed = clock() - start
            if repeat >= WARMUP:
                times[index].append(elapsed)
    results = []
    for index, step in enumerate(steps):
        gc.collect()
        peak = peak_memory_mib(step)
        results.append((statistics.median(times[index]) * 1e3, peak))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--trunks", nargs="+", default=["MLP", "CNN"], choices=["MLP", "CNN"])
    parser.add_argument("--tasks", nargs="+", type=int, default=[2, 4, 10, 40])
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    clock = time.process_time if arguments.threads == 1 else time.perf_counter
    torch.manual_seed(0)
    makers = {"MLP": make_mlp, "CNN": make_cnn}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), median of "
        f"{arguments.repeats}; time in ms, peak memory in MiB"
    )
    header = (
        f"{'trunk':<5} {'T':>3} {'aggregator':<10} | {'sum':>6} {'batched':>7} {'loop':>7} "
        f"{'ours':>7} | {'ours/best':>9} {'ours/batched':>12} {'ours/sum':>8} | {'sum MiB':>7} "
        f"{'best MiB':>8} {'ours MiB':>8} {'mem ratio':>9}"
    )
    print(header)
    print("-" * len(header))
    for trunk in arguments.trunks:
        for n_tasks in arguments.tasks:
            problem = Problem(makers[trunk], n_tasks)
            for aggregator in [Mean(), UPGrad()]:
                steps = [
                    lambda: sum_of_losses(problem, aggregator),
                    lambda: by_hand(problem, aggregator),
                    lambda: loop_by_hand(problem, aggregator),
                    lambda: ours(problem, aggregator),
                ]
                (t_sum, m_sum), (t_hand, m_hand), (t_loop, m_loop), (t_ours, m_ours) = measure(
                    problem, steps, arguments.repeats, clock
                )
                # The memory baseline is that of the faster hand-written form.
                t_best, m_best = (t_hand, m_hand) if t_hand <= t_loop else (t_loop, m_loop)
                print(
                    f"{trunk:<5} {n_tasks:>3} {str(aggregator):<10} | {t_sum:>6.1f} "
                    f"{t_hand:>7.1f} {t_loop:>7.1f} {t_ours:>7.1f} | {t_ours / t_best:>9.2f} "
                    f"{t_ours / t_hand:>12.2f} {t_ours / t_sum:>8.2f} | {m_sum:>7.1f} "
                    f"{m_best:>8.1f} {m_ours:>8.1f} {m_ours / m_best:>9.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
