"""
Multi-task Jacobian descent on a model sharded with FSDP2 (`fully_shard`), on CPU with gloo.

    torchrun --nproc-per-node 2 examples/fsdp_mtl.py

Each process holds a shard of every parameter and trains on its share of every batch. After
`mtl_backward`, each sharded (DTensor) trunk parameter has a `.jac` field with the rows of its local
shard, averaged over the ranks; `jac_to_grad` then aggregates them from the Gramian, all-reduced
over the ranks (a T x T matrix for T tasks), without gathering the Jacobian, and writes DTensor
`.grad` fields that the optimizer steps as usual. At the end, every rank checks that the gathered
parameters are identical to rank 0's.
"""

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from torchjd.aggregation import UPGrad
from torchjd.autojac import jac_to_grad, mtl_backward


class MultiTaskModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU())
        self.regression_head = nn.Linear(16, 1)
        self.classification_head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.trunk(x)
        return features, self.regression_head(features), self.classification_head(features)


def main() -> None:
    dist.init_process_group("gloo")  # torchrun provides the rank, world size and rendezvous.
    rank, world_size = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # The same initial model and data on every rank.

    model = MultiTaskModel()
    mesh = init_device_mesh("cpu", (world_size,))
    for layer in model.trunk:  # One FSDP group per trunk layer, the heads in the root's group.
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    aggregator = UPGrad()

    global_batch_size = 64
    share = global_batch_size // world_size
    for step in range(20):
        x = torch.randn(global_batch_size, 10)
        regression_targets = x[:, :3].sum(dim=1)
        class_targets = (x[:, 3] > 0).long() + (x[:, 4] > 0).long()
        mine = slice(rank * share, (rank + 1) * share)

        features, regression, logits = model(x[mine])
        losses = [
            nn.functional.mse_loss(regression.squeeze(1), regression_targets[mine]),  # Share means.
            nn.functional.cross_entropy(logits, class_targets[mine]),
        ]
        optimizer.zero_grad()
        mtl_backward(losses, features)  # No sync_jacobians: the shards' .jac are already averaged.
        jac_to_grad(model.trunk.parameters(), aggregator)
        optimizer.step()
        if rank == 0 and step % 5 == 0:
            print(f"step {step:2d}: losses on rank 0's share: {[round(loss.item(), 4) for loss in losses]}")

    # Every rank took the same steps: the gathered parameters agree.
    flat = torch.cat([param.full_tensor().detach().flatten() for param in model.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    assert torch.equal(flat, reference), f"Rank {rank} diverged from rank 0."
    if rank == 0:
        print(f"The {world_size} ranks hold identical parameters.")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
