"""
Multi-task Jacobian descent with DistributedDataParallel, on CPU with the gloo backend.

    torchrun --nproc-per-node 2 examples/ddp_mtl.py

Each process trains on its share of every batch. DDP broadcasts the initial parameters and the
buffers; `torchjd.distributed.sync_jacobians` replaces the gradient averaging that DDP would do
during `.backward()`, which `mtl_backward` does not call. At the end, every rank checks that its
parameters are identical to rank 0's.
"""

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from torchjd.aggregation import UPGrad
from torchjd.autojac import jac_to_grad, mtl_backward
from torchjd.distributed import sync_jacobians


class MultiTaskModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU())
        self.regression_head = nn.Linear(16, 1)
        self.classification_head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.trunk(x)
        return features, self.regression_head(features).squeeze(1), self.classification_head(features)


def main() -> None:
    dist.init_process_group("gloo")  # torchrun provides the rank, world size and rendezvous.
    rank, world_size = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # The same data on every rank (each takes its own share of it).

    model = MultiTaskModel()
    ddp_model = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    aggregator = UPGrad()

    global_batch_size = 64
    share = global_batch_size // world_size
    for step in range(20):
        x = torch.randn(global_batch_size, 10)
        regression_targets = x[:, :3].sum(dim=1)
        class_targets = (x[:, 3] > 0).long() + (x[:, 4] > 0).long()
        mine = slice(rank * share, (rank + 1) * share)

        features, regression, logits = ddp_model(x[mine])
        losses = [
            nn.functional.mse_loss(regression, regression_targets[mine]),  # Means over the share.
            nn.functional.cross_entropy(logits, class_targets[mine]),
        ]
        optimizer.zero_grad()
        mtl_backward(losses, features)
        # Average the trunk's Jacobians and the heads' gradients across ranks, in one all-reduce.
        sync_jacobians(model.parameters())
        jac_to_grad(model.trunk.parameters(), aggregator)
        optimizer.step()
        if rank == 0 and step % 5 == 0:
            print(f"step {step:2d}: losses on rank 0's share: {[round(loss.item(), 4) for loss in losses]}")

    # Every replica took the same steps.
    flat = torch.cat([param.detach().flatten() for param in model.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    assert torch.equal(flat, reference), f"Rank {rank} diverged from rank 0."
    if rank == 0:
        print(f"The {world_size} ranks hold identical parameters.")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
