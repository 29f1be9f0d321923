"""
Communication and time per training step of multi-task Jacobian descent under DDP
(``mtl_backward`` + ``torchjd.distributed.sync_jacobians`` + ``jac_to_grad``) against plain DDP
(``sum(losses).backward()``) on the same model, on 2 gloo processes on CPU.

    python benchmarks/distributed.py

Bytes are measured, not computed: DDP's all-reduces through a counting communication hook, ours by
counting what ``sync_jacobians`` hands to ``torch.distributed.all_reduce``.
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


def worker(rank: int, init_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
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
        sys.stdout.flush()
    # Tearing gloo down while a peer still talks to it can abort a rank: leave together.
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        mp.spawn(worker, args=(os.path.join(directory, "rendezvous"),), nprocs=WORLD_SIZE)
