"""
Communication and time per training step of multi-task Jacobian descent, on 2 gloo processes on
CPU, for T = 2, 4, 8 tasks:

- under DDP (``mtl_backward`` + ``torchjd.distributed.sync_jacobians`` + ``jac_to_grad``) against
  plain DDP (``sum(losses).backward()``) on the same model;
- under FSDP2 (``fully_shard`` on each trunk layer and on the root; ``mtl_backward`` +
  ``jac_to_grad``) against plain FSDP training of the same model, with the issue's target:
  plain FSDP + T reduce-scatters of the trunk's gradients + one T x T all-reduce.

    python benchmarks/distributed.py

Bytes are measured, not computed: DDP's all-reduces through a counting communication hook, ours and
FSDP's by counting what is handed to ``torch.distributed``'s collectives. A collective's bytes are
those of its whole (unsharded) buffer: the output of an all-gather, the input of a reduce-scatter.
"""

import os
import statistics
import sys
import tempfile
import time
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

from torchjd.aggregation import UPGrad
from torchjd.autojac import jac_to_grad, mtl_backward
from torchjd.distributed import mark_synchronized, sync_jacobians

WORLD_SIZE = 2
BATCH_PER_RANK = 32
WARMUP, STEPS = 5, 30
TASK_COUNTS = [2, 4, 8]


class MultiTaskModel(nn.Module):
    def __init__(self, n_tasks: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
        self.heads = nn.ModuleList([nn.Linear(256, 1) for _ in range(n_tasks)])

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        features = self.trunk(x)
        return features, [head(features) for head in self.heads]


def measure(rank: int, n_tasks: int, method: str) -> dict[str, float]:
    torch.manual_seed(0)
    model = MultiTaskModel(n_tasks)
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    aggregator = UPGrad()
    counted = {"calls": 0, "bytes": 0}

    def counting_hook(state: Any, bucket: dist.GradBucket) -> torch.futures.Future[Tensor]:
        counted["calls"] += 1
        counted["bytes"] += bucket.buffer().numel() * bucket.buffer().element_size()
        return allreduce_hook(state, bucket)

    ddp.register_comm_hook(None, counting_hook)
    all_reduce = dist.all_reduce

    def counting_all_reduce(tensor: Tensor, *args: Any, **kwargs: Any) -> Any:
        counted["calls"] += 1
        counted["bytes"] += tensor.numel() * tensor.element_size()
        return all_reduce(tensor, *args, **kwargs)

    if method == "JD":
        # Not for DDP: its default hook goes through dist.all_reduce too, and would count twice.
        dist.all_reduce = counting_all_reduce  # type: ignore[assignment]
    generator = torch.Generator().manual_seed(rank)
    times = []
    for step in range(WARMUP + STEPS):
        x = torch.randn(BATCH_PER_RANK, 64, generator=generator)
        targets = torch.randn(BATCH_PER_RANK, n_tasks, generator=generator)
        if step == WARMUP:
            counted.update(calls=0, bytes=0)
        dist.barrier()
        start = time.perf_counter()
        features, outputs = ddp(x)
        losses = [(out.squeeze(1) - targets[:, i]).square().mean() for i, out in enumerate(outputs)]
        optimizer.zero_grad()
        if method == "DDP":
            sum(losses).backward()
        else:
            mtl_backward(losses, features)
            if method == "JD":
                sync_jacobians(model.parameters())
            else:  # The same computation without the communication (and wrong across ranks).
                mark_synchronized(model.parameters())
            jac_to_grad(list(model.trunk.parameters()), aggregator)
        optimizer.step()
        times.append(time.perf_counter() - start)
    dist.all_reduce = all_reduce  # type: ignore[assignment]
    # The slowest rank sets the pace of a synchronous step.
    median = torch.tensor([statistics.median(times[WARMUP:])])
    all_reduce(median, dist.ReduceOp.MAX)
    return {
        "all-reduces": counted["calls"] / STEPS,
        "bytes": counted["bytes"] / STEPS,
        "ms": 1000 * median.item(),
        "shared": sum(p.numel() for p in model.trunk.parameters()),
        "task": sum(p.numel() for p in model.heads.parameters()),
    }


COLLECTIVES = {
    "all_gather_single": "AG",
    "all_gather_into_tensor": "AG",
    "reduce_scatter_single": "RS",
    "reduce_scatter_tensor": "RS",
    "all_reduce": "AR",
}


def measure_fsdp(rank: int, n_tasks: int, method: str) -> dict[str, float]:
    torch.manual_seed(0)
    model = MultiTaskModel(n_tasks)
    mesh = init_device_mesh("cpu", (WORLD_SIZE,))
    for layer in model.trunk:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    aggregator = UPGrad()
    counted = {kind: 0 for kind in COLLECTIVES.values()}
    originals = {name: getattr(dist, name) for name in COLLECTIVES}

    def counting(name: str) -> Any:
        def collective(*args: Any, **kwargs: Any) -> Any:
            tensors = [a for a in [*args, *kwargs.values()] if isinstance(a, Tensor)]
            counted[COLLECTIVES[name]] += max(t.numel() * t.element_size() for t in tensors)
            return originals[name](*args, **kwargs)

        return collective

    for name in COLLECTIVES:
        setattr(dist, name, counting(name))
    generator = torch.Generator().manual_seed(rank)
    times = []
    for step in range(WARMUP + STEPS):
        x = torch.randn(BATCH_PER_RANK, 64, generator=generator)
        targets = torch.randn(BATCH_PER_RANK, n_tasks, generator=generator)
        if step == WARMUP:
            counted.update({kind: 0 for kind in counted})
        dist.barrier()
        start = time.perf_counter()
        features, outputs = model(x)
        losses = [(out.squeeze(1) - targets[:, i]).square().mean() for i, out in enumerate(outputs)]
        optimizer.zero_grad()
        if method == "FSDP":
            sum(losses).backward()
        else:
            mtl_backward(losses, features)
            jac_to_grad(list(model.trunk.parameters()), aggregator)
        optimizer.step()
        times.append(time.perf_counter() - start)
    for name in COLLECTIVES:
        setattr(dist, name, originals[name])
    median = torch.tensor([statistics.median(times[WARMUP:])])
    dist.all_reduce(median, dist.ReduceOp.MAX)
    # What plain FSDP reduce-scatters for the trunk: every parameter padded to world_size equal
    # shards along dim 0.
    trunk_rs = sum(
        WORLD_SIZE * -(-p.shape[0] // WORLD_SIZE) * (p.numel() // p.shape[0]) * p.element_size()
        for p in model.trunk.parameters()
    )
    return {
        **{kind: value / STEPS for kind, value in counted.items()},
        "ms": 1000 * median.item(),
        "trunk_rs": trunk_rs,
        "gramian_ar": n_tasks * n_tasks * 4,
    }


def print_fsdp_table(rows: list[tuple[int, str, dict[str, float]]]) -> None:
    print()
    print(f"FSDP2: fully_shard per trunk layer + root, {WORLD_SIZE} gloo ranks, {BATCH_PER_RANK} samples per rank, fp32, UPGrad")
    print(
        f"{'tasks':>5} {'method':<24} {'all-gather':>11} {'red-scatter':>11} {'all-reduce':>10} "
        f"{'bytes/step':>11} {'x FSDP':>6} {'target':>11} {'ms/step':>8} {'x FSDP':>6}"
    )
    baseline: dict[str, float] = {}
    for n_tasks, method, row in rows:
        total = row["AG"] + row["RS"] + row["AR"]
        if method == "FSDP":
            baseline = {**row, "total": total}
            target = ""
        else:
            limit = baseline["total"] + n_tasks * row["trunk_rs"] + row["gramian_ar"]
            target = f"{limit:,.0f}"
        name = {"FSDP": "plain FSDP (sum of losses)", "FSDP-JD": "JD (mtl_backward)"}[method]
        print(
            f"{n_tasks:>5} {name:<24} {row['AG']:>11,.0f} {row['RS']:>11,.0f} {row['AR']:>10,.0f} "
            f"{total:>11,.0f} {total / baseline['total']:>6.2f} {target:>11} {row['ms']:>8.2f} "
            f"{row['ms'] / baseline['ms']:>6.2f}"
        )


def worker(rank: int, init_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    fsdp_rows = []
    for n_tasks in TASK_COUNTS:
        for method in ["FSDP", "FSDP-JD"]:
            fsdp_rows.append((n_tasks, method, measure_fsdp(rank, n_tasks, method)))
    rows = []
    for n_tasks in TASK_COUNTS:
        for method in ["DDP", "JD", "JD-local"]:
            rows.append((n_tasks, method, measure(rank, n_tasks, method)))
    if rank == 0:
        print(f"{WORLD_SIZE} gloo ranks on CPU, {BATCH_PER_RANK} samples per rank, fp32, UPGrad, median of {STEPS} steps")
        print(f"{'tasks':>5} {'method':<28} {'all-reduces':>11} {'bytes/step':>12} {'x DDP':>6} {'ms/step':>8} {'x DDP':>6}")
        baseline: dict[str, float] = {}
        for n_tasks, method, row in rows:
            if method == "DDP":
                baseline = row
            name = {
                "DDP": "plain DDP (sum of losses)",
                "JD": "JD (mtl_backward + sync)",
                "JD-local": "JD without sync (no comm)",
            }[method]
            print(
                f"{n_tasks:>5} {name:<28} {row['all-reduces']:>11.0f} {row['bytes']:>12,.0f} "
                f"{row['bytes'] / baseline['bytes']:>6.2f} {row['ms']:>8.2f} {row['ms'] / baseline['ms']:>6.2f}"
            )
        shared, task = rows[0][2]["shared"], rows[0][2]["task"]
        print(f"trunk: {shared:,} parameters; heads: {task // TASK_COUNTS[0]:,} parameters per task")
        print_fsdp_table(fsdp_rows)
        sys.stdout.flush()
    # Tearing gloo down while a peer still talks to it can abort a rank: leave together.
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        mp.spawn(worker, args=(os.path.join(directory, "rendezvous"),), nprocs=WORLD_SIZE)
