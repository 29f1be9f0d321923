"""
What a step costs with each entry point of torchjd, as a ratio to the plain-PyTorch step on the
same model, measured in the same run (the tables of docs/costs.md; the autogram table comes from
benchmarks/autogram.py).

- jac: the Jacobian of m losses of an MLP 64-256-256-m (batch 32, one loss per output) with
  `torchjd.autojac.jac`, against one plain step: forward + `losses.sum().backward()`.
- MTL: a trunk MLP 64-256-256 with T linear heads (batch 32), forward + `mtl_backward` +
  `jac_to_grad(trunk, A)` for A = Mean and UPGrad, against forward + `sum(losses).backward()`.
- Aggregators: each aggregator (default arguments) on a random float32 Jacobian [m, n] with n the
  number of trunk parameters above (82,432), against the plain MTL step at T = 2.

Time: the fastest of R rounds, the steps of one table cell being interleaved within each round.
On a machine shared with other jobs, the fastest round is the one least disturbed by the others,
which makes it a steadier estimate of the intrinsic cost than the median; expect noise anyway.

Run: python benchmarks/costs.py [--threads N] [--repeats R] [--sections jac mtl aggregators]
"""

import argparse
import inspect
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

import torchjd.aggregation as aggregation
from torchjd import Stateful
from torchjd.autojac import jac, jac_to_grad, mtl_backward

WARMUP = 3
BATCH = 32
# Aggregators whose input is not one Jacobian: stacked estimates from several batches (MoDo,
# SDMGrad), or the loss values besides (GradNorm).
_OTHER_INPUTS = {"MoDo", "SDMGrad", "GradNorm"}


def interleaved_times(functions: list[Callable[[], object]], repeats: int) -> list[float]:
    """Fastest time (ms) of each function over the rounds, calling them in turn in every round."""

    times: list[list[float]] = [[] for _ in functions]
    for repeat in range(WARMUP + repeats):
        for index, function in enumerate(functions):
            start = time.perf_counter()
            function()
            elapsed = time.perf_counter() - start
            if repeat >= WARMUP:
                times[index].append(elapsed)
    return [min(t) * 1e3 for t in times]


def make_trunk() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())


def jac_table(repeats: int) -> None:
    print("jac: Jacobian of m losses, MLP 64-256-256-m, batch 32")
    print(f"{'m':>5} {'plain ms':>9} {'jac ms':>9} {'x plain':>8}")
    for m in [2, 8, 32, 128]:
        torch.manual_seed(0)
        model = nn.Sequential(make_trunk(), nn.Linear(256, m))
        params = list(model.parameters())
        x = torch.randn(BATCH, 64)

        def plain() -> None:
            model.zero_grad(set_to_none=True)
            (model(x) ** 2).mean(0).sum().backward()

        def jacobian() -> None:
            jac((model(x) ** 2).mean(0), params)

        plain_ms, jac_ms = interleaved_times([plain, jacobian], repeats)
        print(f"{m:>5} {plain_ms:>9.3f} {jac_ms:>9.3f} {jac_ms / plain_ms:>8.2f}")
    print()


def make_mtl(tasks: int) -> tuple[nn.Module, nn.ModuleList, Tensor, Tensor]:
    torch.manual_seed(0)
    return make_trunk(), nn.ModuleList([nn.Linear(256, 1) for _ in range(tasks)]), torch.randn(
        BATCH, 64
    ), torch.randn(BATCH, tasks)


def mtl_table(repeats: int) -> None:
    print("MTL: trunk MLP 64-256-256 + T linear heads, batch 32")
    print(
        f"{'T':>5} {'plain ms':>9} {'Mean ms':>9} {'x plain':>8} {'UPGrad ms':>10} {'x plain':>8}"
    )
    for tasks in [2, 5, 10, 20, 40]:
        trunk, heads, x, y = make_mtl(tasks)
        params = [*trunk.parameters(), *heads.parameters()]

        def losses() -> tuple[Tensor, list[Tensor]]:
            features = trunk(x)
            return features, [
                ((head(features).squeeze(1) - y[:, t]) ** 2).mean() for t, head in enumerate(heads)
            ]

        def plain() -> None:
            for p in params:
                p.grad = None
            torch.stack(losses()[1]).sum().backward()

        def jd(aggregator: nn.Module) -> Callable[[], None]:
            def step() -> None:
                for p in params:
                    p.grad = None
                features, task_losses = losses()
                mtl_backward(task_losses, features)
                jac_to_grad(trunk.parameters(), aggregator)

            return step

        plain_ms, mean_ms, upgrad_ms = interleaved_times(
            [plain, jd(aggregation.Mean()), jd(aggregation.UPGrad())], repeats
        )
        print(
            f"{tasks:>5} {plain_ms:>9.3f} {mean_ms:>9.3f} {mean_ms / plain_ms:>8.2f} "
            f"{upgrad_ms:>10.3f} {upgrad_ms / plain_ms:>8.2f}"
        )
    print()


def default_aggregators() -> dict[str, aggregation.Aggregator]:
    """Every aggregator of torchjd.aggregation that can be built without arguments."""

    result = {}
    for name in aggregation.__all__:
        cls = getattr(aggregation, name)
        if not (inspect.isclass(cls) and issubclass(cls, aggregation.Aggregator)):
            continue
        if inspect.isabstract(cls) or name in {"Aggregator", "WeightedAggregator"}:
            continue
        if name in _OTHER_INPUTS:
            continue
        try:
            result[name] = cls()
        except (TypeError, ValueError):
            continue  # needs arguments (e.g. Constant, Krum, NashMTL)
    return result


def aggregators_table(repeats: int) -> None:
    trunk, heads, x, y = make_mtl(2)
    params = [*trunk.parameters(), *heads.parameters()]
    n = sum(p.numel() for p in trunk.parameters())

    def plain() -> None:
        for p in params:
            p.grad = None
        features = trunk(x)
        torch.stack([((h(features).squeeze(1) - y[:, t]) ** 2).mean() for t, h in enumerate(heads)]).sum().backward()

    ms = [2, 8, 32, 128]
    aggregators = default_aggregators()
    print(f"Aggregators on a random float32 Jacobian [m, {n}], as a multiple of the plain MTL step (T = 2)")
    print(f"{'aggregator':<14}" + "".join(f"{f'm={m}':>10}" for m in ms))
    torch.manual_seed(0)
    matrices = {m: torch.randn(m, n) for m in ms}
    for name, aggregator in aggregators.items():
        cells = []
        for m in ms:
            matrix = matrices[m]
            if isinstance(aggregator, Stateful):
                aggregator.reset()  # its state is sized by the previous m

            def aggregate(aggregator: aggregation.Aggregator = aggregator) -> None:
                aggregator(matrix)

            try:
                plain_ms, aggregator_ms = interleaved_times([plain, aggregate], repeats)
            except (RuntimeError, ValueError) as error:  # e.g. needs the loss values first
                cells.append(f"{'n/a':>10}")
                print(f"  {name} at m={m}: {type(error).__name__}: {error}".splitlines()[0][:96])
                continue
            cells.append(f"{aggregator_ms / plain_ms:>10.2f}")
        print(f"{name:<14}" + "".join(cells), flush=True)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--sections", nargs="+", default=["jac", "mtl", "aggregators"], choices=["jac", "mtl", "aggregators"]
    )
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), fastest of {arguments.repeats}")
    print()
    tables = {"jac": jac_table, "mtl": mtl_table, "aggregators": aggregators_table}
    for section in arguments.sections:
        tables[section](arguments.repeats)


if __name__ == "__main__":
    main()
