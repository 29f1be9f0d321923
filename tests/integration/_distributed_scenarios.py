"""
Training loops shared by the ranks of ``test_distributed_training.py`` and
``test_distributed_fsdp.py`` (spawned processes import this module by name) and by their
single-process references.

Everything is float64 and seeded identically on every rank, so that DDP or FSDP2 training on shares
of the batch and single-process training on the whole batch can be compared to 1e-5. Starting
processes costs seconds and the scenarios milliseconds: one launch per world size runs them all
(:func:`launched`), and both test modules read its results.
"""

import functools
from typing import Any

import torch
from torch import Tensor, nn
from torch.testing import assert_close
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, Shard, distribute_tensor
from torch.nn.parallel import DistributedDataParallel

import torchjd.aggregation
from torchjd.aggregation import IMTLG, MGDA, MGDAWeighting, Aggregator, Weighting
from torchjd.autogram import Engine
from torchjd.autojac import backward, jac_to_grad, mtl_backward
from torchjd.distributed import sync_jacobians
from unit.distributed._launch import run_on_ranks

BATCH_SIZE = 12  # Shares of equal size on 2 and on 3 ranks.
STEPS = 3
LR = 0.1
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


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

    def forward(self, stat: Tensor) -> Tensor:
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




def train_iwrm_fsdp(
    weighting: Weighting, rank: int, world_size: int, reshard_after_forward: bool
) -> list[list[Tensor]]:
    """Per-rank IWRM under `fully_shard`: weights from this rank's Gramian, then FSDP's backward."""

    model = new_iwrm_model()
    engine = Engine(model, batch_dim=0)
    mesh = init_device_mesh("cpu", (world_size,))
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    trajectory = []
    for x, y in iwrm_batches():
        x, y = x[rank_slice(rank, world_size)], y[rank_slice(rank, world_size)]
        losses = (model(x).squeeze(1) - y) ** 2
        weights = weighting(engine.compute_gramian(losses))
        optimizer.zero_grad()
        losses.backward(weights)  # FSDP reduce-scatters the ranks' weighted gradients (averaged).
        optimizer.step()
        trajectory.append(full_snapshot(model))
    engine.remove_hooks()
    return trajectory


def backward_fsdp(rank: int, world_size: int) -> list[list[Tensor]]:
    """`backward` + `jac_to_grad` on every parameter of a sharded model (heads included), UPGrad."""

    model = new_mtl_model(FSDP_WIDTH)
    shard_per_layer(model, world_size, reshard_after_forward=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    trajectory = []
    for batch in mtl_batches():
        x, y1, y2 = (tensor[rank_slice(rank, world_size)] for tensor in batch)
        _, (out1, out2) = model(x)
        optimizer.zero_grad()
        backward([(out1 - y1).square().mean(), (out2 - y2).square().mean()])
        jac_to_grad(list(model.parameters()), torchjd.aggregation.UPGrad())
        optimizer.step()
        trajectory.append(full_snapshot(model))
    return trajectory


def train_backward() -> list[list[Tensor]]:
    """Single-process reference of `backward_fsdp` on whole batches."""

    model = new_mtl_model(FSDP_WIDTH)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    trajectory = []
    for x, y1, y2 in mtl_batches():
        _, (out1, out2) = model(x)
        optimizer.zero_grad()
        backward([(out1 - y1).square().mean(), (out2 - y2).square().mean()])
        jac_to_grad(list(model.parameters()), torchjd.aggregation.UPGrad())
        optimizer.step()
        trajectory.append(snapshot(model))
    return trajectory


def first_step_fsdp(rank: int, world_size: int) -> dict[str, Any]:
    """
    What one sharded `mtl_backward` leaves on the DTensor parameters, what `jac_to_grad` writes,
    and what it refuses.
    """

    model = new_mtl_model(FSDP_WIDTH)
    shard_per_layer(model, world_size, reshard_after_forward=True)
    x, y1, y2 = (tensor[rank_slice(rank, world_size)] for tensor in mtl_batches()[0])
    trunk = list(model.trunk.parameters())
    features, (out1, out2) = model(x)
    mtl_backward([(out1 - y1).square().mean(), (out2 - y2).square().mean()], features)
    result: dict[str, Any] = {
        "jacs": [param.jac.clone() for param in trunk],
        "local_shapes": [list(param.to_local().shape) for param in trunk],
        "heads_grad_types": [type(param.grad).__name__ for param in model.heads.parameters()],
    }
    # A second call accumulates; the DTensor parameters may also be given explicitly.
    features, (out1, out2) = model(x)
    losses = [(out1 - y1).square().mean(), (out2 - y2).square().mean()]
    mtl_backward(losses, features, shared_params=model.trunk.parameters())
    result["accumulated_jacs"] = [param.jac.clone() for param in trunk]
    try:
        sync_jacobians(model.parameters())
        result["sync_error"] = None
    except ValueError as error:
        result["sync_error"] = str(error)
    try:
        jac_to_grad(trunk, torchjd.aggregation.ConFIG())
        result["matrix_based_error"] = None
    except ValueError as error:
        result["matrix_based_error"] = str(error)
    result["jacs_kept_after_error"] = all(hasattr(param, "jac") for param in trunk)
    result["weights"] = jac_to_grad(trunk, torchjd.aggregation.UPGrad())
    result["grads_are_dtensors"] = all(
        isinstance(p.grad, DTensor) and p.grad.placements == p.placements for p in trunk
    )
    result["jacs_freed"] = not any(hasattr(param, "jac") for param in trunk)
    result["input_errors"] = fsdp_input_errors(model, x)
    return result


def fsdp_input_errors(model: MultiTaskModel, x: Tensor) -> dict[str, Any]:
    """What `backward` refuses about sharded inputs, and whether it then wrote nothing."""

    def attempt(inputs: list[Tensor]) -> str | None:
        _, (out1, out2) = model(x)
        try:
            backward([out1.sum(), out2.sum()], inputs=inputs)
        except ValueError as error:
            return str(error)
        return None

    weight = model.trunk[0].weight
    foreign = nn.Parameter(distribute_tensor(torch.zeros(4, dtype=torch.float64), weight.device_mesh, [Shard(0)]))
    errors: dict[str, Any] = {"foreign_dtensor": attempt([foreign])}
    weight.jac = torch.zeros(2, 1, 1, dtype=torch.float64)  # Not [2] + the local shard's shape.
    errors["wrong_jac_shape"] = attempt([weight, model.trunk[2].weight])
    errors["wrote_something"] = hasattr(model.trunk[2].weight, "jac")
    del weight.jac
    return errors


def fsdp_scenarios(rank: int, world_size: int) -> dict[str, Any]:
    return {
        "mtl": {
            (name, reshard): train_mtl_fsdp(aggregator, rank, world_size, reshard)
            for name, aggregator in fsdp_aggregators().items()
            for reshard in [True, False]
        },
        "backward": backward_fsdp(rank, world_size),
        "iwrm": {name: train_iwrm_fsdp(w, rank, world_size, True) for name, w in iwrm_weightings().items()},
        "first_step": first_step_fsdp(rank, world_size),
    }


def worker(rank: int, world_size: int) -> dict[str, Any]:
    """Everything one launch runs: the DDP scenarios (on 2 ranks only), then the FSDP2 ones."""

    result: dict[str, Any] = {"fsdp": fsdp_scenarios(rank, world_size)}
    if world_size == 2:
        result["mtl"] = {name: train_mtl(agg, rank, world_size) for name, agg in aggregators().items()}
        result["unsynchronized_error"] = unsynchronized_mtl_error()
        result["iwrm"] = {
            name: train_iwrm_ddp(weighting, rank, world_size) for name, weighting in iwrm_weightings().items()
        }
    return result


@functools.cache
def launched(world_size: int) -> list[dict[str, Any]]:
    """What `worker` returns on each of `world_size` ranks: one launch per size per test session."""

    return run_on_ranks(worker, world_size)


def assert_identical_on_ranks(trajectories: list[list[list[Tensor]]]) -> None:
    for step, params_per_rank in enumerate(zip(*trajectories)):
        for params in zip(*params_per_rank):
            for param in params[1:]:
                assert torch.equal(param, params[0]), f"Ranks differ after step {step}."


def assert_same_trajectory(actual: list[list[Tensor]], expected: list[list[Tensor]]) -> None:
    assert len(actual) == len(expected)
    for step, (actual_params, expected_params) in enumerate(zip(actual, expected)):
        for actual_param, expected_param in zip(actual_params, expected_params):
            assert_close(actual_param, expected_param, **TOLERANCE, msg=lambda m: f"Step {step}: {m}")


def train_iwrm_block_diagonal(weighting: Weighting, world_size: int) -> list[list[Tensor]]:
    """
    Single-process IWRM on whole batches whose weights come from the block-diagonal Gramian, the
    blocks being the ranks' shares: ``(1 / world_size) * sum_r weighting(J_r J_rᵀ) @ J_r``, with the
    per-sample Jacobian ``J`` formed densely by an autograd loop.
    """

    model = new_iwrm_model()
    params = list(model.parameters())
    optimizer = torch.optim.SGD(params, lr=LR)
    trajectory = []
    for x, y in iwrm_batches():
        losses = (model(x).squeeze(1) - y) ** 2
        rows = [torch.autograd.grad(loss, params, retain_graph=True) for loss in losses]
        jacobian = torch.stack([torch.cat([g.reshape(-1) for g in row]) for row in rows])  # [B, n]
        blocks = [jacobian[rank_slice(rank, world_size)] for rank in range(world_size)]
        gradient = sum(weighting(block @ block.T) @ block for block in blocks) / world_size
        for param, value in zip(params, gradient.split([p.numel() for p in params])):
            param.grad = value.view(param.shape)
        optimizer.step()
        trajectory.append(snapshot(model))
    return trajectory
