"""
Time and peak memory of one multi-task step (`mtl_backward` + `jac_to_grad` + `optimizer.step()`)
against the same Jacobian step written by hand with `torch.autograd`, and against the plain
sum-of-losses step, all measured in the same run.

The hand-written step: one backward through the heads to the features, batched over the tasks with
`is_grads_batched`; one batched vector-Jacobian product through the trunk; then the aggregation
(the mean of the rows for Mean, `UPGrad()` on the concatenated matrix for UPGrad).

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

WARMUP = 3


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
    if isinstance(aggregator, Mean):
        for param, jacobian in zip(problem.trunk_params, trunk_jacs):
            param.grad = jacobian.mean(dim=0)
    else:
        matrix = torch.cat([jacobian.reshape(n_tasks, -1) for jacobian in trunk_jacs], dim=1)
        del trunk_jacs
        vector = aggregator(matrix)
        del matrix
        for param, gradient in zip(problem.trunk_params, vector.split([p.numel() for p in problem.trunk_params])):
            param.grad = gradient.view(param.shape)
    problem.step()


def sum_of_losses(problem: Problem, aggregator: Aggregator) -> None:
    _, losses = problem.forward()
    torch.stack(losses).sum().backward()
    problem.step()


def measure(problem: Problem, steps: list[Callable[[], None]], repeats: int) -> list[tuple[float, float]]:
    """Median time (ms) and peak memory (MiB) of each step, interleaved within each repeat."""

    times: list[list[float]] = [[] for _ in steps]
    for repeat in range(WARMUP + repeats):
        for offset in range(len(steps)):
            index = (repeat + offset) % len(steps)
            start = time.perf_counter()
            steps[index]()
            elapsed = time.perf_counter() - start
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
    torch.manual_seed(0)
    makers = {"MLP": make_mlp, "CNN": make_cnn}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), median of "
        f"{arguments.repeats}; time in ms, peak memory in MiB"
    )
    header = (
        f"{'trunk':<5} {'T':>3} {'aggregator':<10} | {'sum':>7} {'by hand':>8} {'ours':>8} | "
        f"{'ours/hand':>9} {'ours/sum':>8} | {'sum MiB':>8} {'hand MiB':>8} {'ours MiB':>8} "
        f"{'mem ratio':>9}"
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
                    lambda: ours(problem, aggregator),
                ]
                (t_sum, m_sum), (t_hand, m_hand), (t_ours, m_ours) = measure(
                    problem, steps, arguments.repeats
                )
                print(
                    f"{trunk:<5} {n_tasks:>3} {str(aggregator):<10} | {t_sum:>7.1f} {t_hand:>8.1f} "
                    f"{t_ours:>8.1f} | {t_ours / t_hand:>9.2f} {t_ours / t_sum:>8.2f} | "
                    f"{m_sum:>8.1f} {m_hand:>8.1f} {m_ours:>8.1f} {m_ours / m_hand:>9.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
