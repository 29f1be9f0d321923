"""
Training loops shared by the ranks of ``test_distributed_training.py`` (spawned processes import
this module by name) and by its single-process references.

Everything is float64 and seeded identically on every rank, so that DDP training on halves of the
batch and single-process training on the whole batch can be compared to 1e-5.
"""

from typing import Any

import torch
from torch import Tensor, nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

import torchjd.aggregation
from torchjd.aggregation import IMTLG, MGDA, MGDAWeighting, Aggregator, Weighting
from torchjd.autogram import Engine
from torchjd.autojac import jac_to_grad, mtl_backward
from torchjd.distributed import sync_jacobians

BATCH_SIZE = 12  # Shares of equal size on 2 and on 3 ranks.
STEPS = 3
LR = 0.1


class MultiTaskModel(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(5, width), nn.Tanh(), nn.Linear(width, 6), nn.Tanh())
        self.heads = nn.ModuleList([nn.Linear(6, 1), nn.Linear(6, 2)])

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        features = self.trunk(x)
        return features, [head(features) for head in self.heads]


def aggregators() -> dict[str, Aggregator]:
    """Non-linear aggregators: averaging their outputs instead of their inputs would be wrong."""

    result: dict[str, Aggregator] = {"IMTLG": IMTLG(), "MGDA": MGDA()}
    if hasattr(torchjd.aggregation, "UPGrad"):  # Being written at the same time as this test.
        result["UPGrad"] = torchjd.aggregation.UPGrad()
    return result


def mtl_batches() -> list[tuple[Tensor, Tensor, Tensor]]:
    generator = torch.Generator().manual_seed(1)
    options: dict[str, Any] = {"dtype": torch.float64, "generator": generator}
    return [
        (torch.randn(BATCH_SIZE, 5, **options), torch.randn(BATCH_SIZE, 1, **options), torch.randn(BATCH_SIZE, 2, **options))
        for _ in range(STEPS)
    ]


def rank_slice(rank: int, world_size: int) -> slice:
    share = BATCH_SIZE // world_size
    return slice(rank * share, (rank + 1) * share)


def new_mtl_model(width: int = 8) -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(width).double()


def mtl_step(
    forward: nn.Module,
    model: MultiTaskModel,
    batch: tuple[Tensor, Tensor, Tensor],
    aggregator: Aggregator,
    optimizer: torch.optim.Optimizer,
    synchronize: bool,
) -> None:
    x, y1, y2 = batch
    features, (out1, out2) = forward(x)
    losses = [(out1 - y1).square().mean(), (out2 - y2).square().mean()]  # Batch means.
    optimizer.zero_grad()
    mtl_backward(losses, features)
    if synchronize:
        sync_jacobians(model.parameters())
    jac_to_grad(list(model.trunk.parameters()), aggregator)
    optimizer.step()


def snapshot(model: nn.Module) -> list[Tensor]:
    return [param.detach().clone() for param in model.parameters()]


def train_mtl(
    aggregator: Aggregator, rank: int | None, world_size: int, width: int = 8
) -> list[list[Tensor]]:
    """
    Parameters after each step of Jacobian descent: on this rank's share of every batch, through
    DDP and ``sync_jacobians``, or (``rank=None``) single-process on whole batches.
    """

    model = new_mtl_model(width)
    forward: nn.Module = model if rank is None else DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    trajectory = []
    for batch in mtl_batches():
        if rank is not None:
            batch = tuple(tensor[rank_slice(rank, world_size)] for tensor in batch)  # type: ignore[assignment]
        mtl_step(forward, model, batch, aggregator, optimizer, synchronize=rank is not None)
        trajectory.append(snapshot(model))
    return trajectory


def unsynchronized_mtl_error() -> str | None:
    """The message of the error that a DDP user who forgot ``sync_jacobians`` gets, if any."""

    model = new_mtl_model()
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    try:
        mtl_step(ddp, model, mtl_batches()[0], IMTLG(), optimizer, synchronize=False)
    except ValueError as error:
        return str(error)
    return None


def new_iwrm_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1)).double()


def iwrm_batches() -> list[tuple[Tensor, Tensor]]:
    generator = torch.Generator().manual_seed(2)
    options: dict[str, Any] = {"dtype": torch.float64, "generator": generator}
    return [(torch.randn(BATCH_SIZE, 5, **options), torch.randn(BATCH_SIZE, **options)) for _ in range(STEPS)]


class LocalMeanWeighting(Weighting):
    """``1 / b`` for each of ``b`` objectives: IWRM with it is plain mean-loss training."""

    def compute_weights(self, stat: Tensor) -> Tensor:
        return torch.full((stat.shape[0],), 1.0 / stat.shape[0], dtype=stat.dtype)


def iwrm_weightings() -> dict[str, Weighting]:
    return {"MGDA": MGDAWeighting(), "mean": LocalMeanWeighting()}


def train_iwrm_ddp(weighting: Weighting, rank: int, world_size: int) -> list[list[Tensor]]:
    """Per-rank IWRM: weights from this rank's own Gramian, then DDP's ordinary backward."""

    model = new_iwrm_model()
    engine = Engine(model, batch_dim=0)
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    trajectory = []
    for x, y in iwrm_batches():
        x, y = x[rank_slice(rank, world_size)], y[rank_slice(rank, world_size)]
        losses = (ddp(x).squeeze(1) - y) ** 2  # [BATCH_SIZE / world_size]
        weights = weighting(engine.compute_gramian(losses))
        optimizer.zero_grad()
        losses.backward(weights)  # DDP averages the ranks' weighted gradients.
        optimizer.step()
        trajectory.append(snapshot(model))
    engine.remove_hooks()
    return trajectory


def worker(rank: int, world_size: int) -> dict[str, Any]:
    return {
        "mtl": {name: train_mtl(aggregator, rank, world_size) for name, aggregator in aggregators().items()},
        "unsynchronized_error": unsynchronized_mtl_error(),
        "iwrm": {name: train_iwrm_ddp(weighting, rank, world_size) for name, weighting in iwrm_weightings().items()},
    }


# FSDP2 (`fully_shard`). A trunk width of 7 makes uneven shards on 2 and 3 ranks, and the head
# `Linear(6, 1)` has fewer rows than 3 ranks: some ranks hold empty shards.
FSDP_WIDTH = 7


def fsdp_aggregators() -> dict[str, Aggregator]:
    return {"UPGrad": torchjd.aggregation.UPGrad(), "MGDA": MGDA(), "Mean": torchjd.aggregation.Mean()}


def shard_per_layer(model: MultiTaskModel, world_size: int, reshard_after_forward: bool) -> None:
    """FSDP2's recommended wrapping: each trunk layer is its own group, the root holds the heads."""

    mesh = init_device_mesh("cpu", (world_size,))
    for layer in model.trunk:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward)


def full_snapshot(model: nn.Module) -> list[Tensor]:
    """The whole parameters, gathered from their shards (a collective: every rank must call it)."""

    return [
        (param.full_tensor() if isinstance(param, DTensor) else param).detach().clone()
        for param in model.parameters()
    ]


def train_mtl_fsdp(
    aggregator: Aggregator, rank: int, world_size: int, reshard_after_forward: bool
) -> list[list[Tensor]]:
    """Multi-task Jacobian descent on this rank's share of every batch, under `fully_shard`."""

    model = new_mtl_model(FSDP_WIDTH)
    shard_per_layer(model, world_size, reshard_after_forward)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    trajectory = []
    for batch in mtl_batches():
        x, y1, y2 = (tensor[rank_slice(rank, world_size)] for tensor in batch)
        features, (out1, out2) = model(x)
        losses = [(out1 - y1).square().mean(), (out2 - y2).square().mean()]
        optimizer.zero_grad()
        mtl_backward(losses, features)
        jac_to_grad(list(model.trunk.parameters()), aggregator)
        optimizer.step()
        trajectory.append(full_snapshot(model))
    return trajectory


def fsdp_worker(rank: int, world_size: int) -> dict[str, Any]:
    return {
        "mtl": {
            (name, reshard): train_mtl_fsdp(aggregator, rank, world_size, reshard)
            for name, aggregator in fsdp_aggregators().items()
            for reshard in [True, False]
        },
    }
