"""
Time and peak memory of one instance-wise risk minimization (IWRM) step with
`torchjd.autogram.Engine`, against one plain SGD step on the same model and against the same step
done with `torchjd.autojac` (full Jacobian), all measured in the same run.

Steps (each includes the forward pass; gradients are reset outside the timed region):
- SGD:               loss = losses.mean(); loss.backward()
- autogram + W:      losses.backward(W(engine.compute_gramian(losses)))
- autojac + A:       torchjd.autojac.backward(losses); jac_to_grad(params, A)
with W = MeanWeighting (isolates the engine's own cost) or UPGradWeighting, and A = Mean or UPGrad.
The row "UPGradWeighting alone" times the weighting on the Gramian of the same batch, the part of
the UPGrad step that grows like batch³, and "one Cholesky of the Gramian" one factorization of it
(a lower bound for any exact solver of UPGrad's projections). A row whose imports are missing is skipped; the autojac
rows are skipped above --max-autojac-batch (their Jacobian has batch × parameters entries).

Targets (SPEC 9, MLP 128-256-256-1): the autogram + MeanWeighting step <= 3x the SGD step at batch
128, the autogram + UPGradWeighting step <= 10x at batch 1024.

Time: median over repeats; the SGD and autogram steps are interleaved within each repeat so that
they see the same load (the autojac steps are interleaved with each other, in a separate loop).
Memory: the CPU allocator of torch is invisible to tracemalloc and RSS is too coarse, so peak memory
is the highest running sum of the allocations and frees that torch.profiler records during one
step (forward included), in MiB.

Run: python benchmarks/autogram.py [--threads N] [--repeats R] [--models MLP CNN]
     [--batches 32 128 512 1024] [--max-autojac-batch 128] [--no-memory]
"""

import argparse
import copy
import gc
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from torchjd.autogram import Engine

from _memory import peak_memory_mib  # benchmarks/_memory.py

WARMUP = 5


def make_mlp() -> tuple[nn.Module, Callable[[int], tuple[Tensor, Tensor]], Callable]:
    model = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1))

    def data(batch: int) -> tuple[Tensor, Tensor]:
        return torch.randn(batch, 128), torch.randn(batch)

    def losses(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return (model(x).squeeze(1) - y) ** 2

    return model, data, losses


def make_cnn() -> tuple[nn.Module, Callable[[int], tuple[Tensor, Tensor]], Callable]:
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(32 * 16, 10),
    )

    def data(batch: int) -> tuple[Tensor, Tensor]:
        return torch.randn(batch, 3, 16, 16), torch.randint(0, 10, (batch,))

    def losses(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return nn.functional.cross_entropy(model(x), y, reduction="none")

    return model, data, losses


class _InlineMeanWeighting(nn.Module):
    def forward(self, gramian: Tensor) -> Tensor:
        return torch.full((gramian.shape[0],), 1 / gramian.shape[0], dtype=gramian.dtype)


def _weightings() -> dict[str, nn.Module | None]:
    try:
        from torchjd.aggregation import MeanWeighting
        mean: nn.Module = MeanWeighting()
    except ImportError:
        mean = _InlineMeanWeighting()  # same weights; the library's version is not there yet
    try:
        from torchjd.aggregation import UPGradWeighting
        upgrad: nn.Module | None = UPGradWeighting()
    except ImportError:
        upgrad = None
    return {"Mean": mean, "UPGrad": upgrad}


def _aggregators() -> dict[str, nn.Module | None]:
    result: dict[str, nn.Module | None] = {}
    for name in ["Mean", "UPGrad"]:
        try:
            module = __import__("torchjd.aggregation", fromlist=[name])
            result[name] = getattr(module, name)()
        except (ImportError, AttributeError):
            result[name] = None
    return result


def build_steps(
    make: Callable, batch: int, with_autojac: bool
) -> list[tuple[str, Callable[[], None] | None, nn.Module]]:
    torch.manual_seed(0)
    base, data, compute_losses = make()
    x, y = data(batch)

    plain = copy.deepcopy(base)

    def sgd() -> None:
        compute_losses(plain, x, y).mean().backward()

    hooked = copy.deepcopy(base)
    engine = Engine(hooked, batch_dim=0)

    def autogram_step(weighting: nn.Module) -> Callable[[], None]:
        def step() -> None:
            losses = compute_losses(hooked, x, y)
            losses.backward(weighting(engine.compute_gramian(losses)))

        return step

    steps: list[tuple[str, Callable[[], None] | None, nn.Module]] = [("SGD step", sgd, plain)]
    weightings = _weightings()
    for name, weighting in weightings.items():
        steps.append((f"autogram + {name}Weighting", None if weighting is None else autogram_step(weighting), hooked))
    upgrad = weightings["UPGrad"]
    weighting_alone = None
    if upgrad is not None:
        losses = compute_losses(hooked, x, y)
        gramian = engine.compute_gramian(losses)
        del losses

        def weighting_alone() -> None:
            upgrad(gramian)

    steps.append(("UPGradWeighting alone", weighting_alone, hooked))
    # A lower bound of any exact projection onto the dual cone: one factorization of the Gramian.
    ridge = None
    if upgrad is not None:
        ridge = gramian + 1e-3 * gramian.diagonal().mean() * torch.eye(batch)

    def cholesky() -> None:
        torch.linalg.cholesky(ridge)

    steps.append(("one Cholesky of the Gramian", None if ridge is None else cholesky, hooked))
    if not with_autojac:
        return steps

    jacobian_model = copy.deepcopy(base)
    try:
        from torchjd.autojac import backward, jac_to_grad
    except ImportError:
        backward = jac_to_grad = None  # type: ignore
    for name, aggregator in _aggregators().items():
        step = None
        if backward is not None and aggregator is not None:

            def step(aggregator: nn.Module = aggregator) -> None:
                params = list(jacobian_model.parameters())
                backward(compute_losses(jacobian_model, x, y), inputs=params)
                jac_to_grad(params, aggregator)

        steps.append((f"autojac + {name}", step, jacobian_model))
    return steps


def measure(
    steps: list[tuple[str, Callable[[], None] | None, nn.Module]], repeats: int, memory: bool
) -> list[tuple[float, float] | None]:
    times: list[list[float]] = [[] for _ in steps]
    for repeat in range(WARMUP + repeats):
        for index, (_, step, model) in enumerate(steps):
            if step is None:
                continue
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            step()
            elapsed = time.perf_counter() - start
            if repeat >= WARMUP:
                times[index].append(elapsed)
    results: list[tuple[float, float] | None] = []
    for index, (_, step, model) in enumerate(steps):
        if step is None:
            results.append(None)
            continue
        model.zero_grad(set_to_none=True)
        gc.collect()
        mib = peak_memory_mib(step) if memory else float("nan")
        results.append((statistics.median(times[index]) * 1e3, mib))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--models", nargs="+", default=["MLP", "CNN"], choices=["MLP", "CNN"])
    parser.add_argument("--batches", nargs="+", type=int, default=[32, 128, 512, 1024])
    parser.add_argument("--max-autojac-batch", type=int, default=128)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory columns")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)

    header = f"{'model':<5} {'batch':>5}  {'step':<27} {'ms':>8} {'x SGD':>7} {'MiB':>8} {'x SGD':>7}"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), median of {arguments.repeats}")
    print(header)
    print("-" * len(header))
    makers = {"MLP": make_mlp, "CNN": make_cnn}
    for model_name in arguments.models:
        for batch in arguments.batches:
            with_autojac = batch <= arguments.max_autojac_batch
            steps = build_steps(makers[model_name], batch, with_autojac)
            # The autojac steps allocate hundreds of MiB; interleaved with the small steps, they
            # would slow the SGD baseline down (caches, allocator) and flatter the ratios. So the
            # SGD and autogram steps are interleaved with each other, the autojac steps apart.
            memory = not arguments.no_memory
            results = measure(steps[:5], arguments.repeats, memory) + measure(
                steps[5:], arguments.repeats, memory
            )
            base = results[0]
            assert base is not None
            for (name, _, _), result in zip(steps, results):
                if result is None:
                    print(f"{model_name:<5} {batch:>5}  {name:<27} {'skipped (not available)':>33}")
                    continue
                ms, mib = result
                print(
                    f"{model_name:<5} {batch:>5}  {name:<27} {ms:>8.3f} {ms / base[0]:>7.2f} "
                    f"{mib:>8.2f} {mib / max(base[1], 1e-9):>7.2f}"
                )
            if not with_autojac:
                print(f"{model_name:<5} {batch:>5}  {'autojac rows':<27} {'skipped (--max-autojac-batch)':>33}")
            print()


if __name__ == "__main__":
    main()
