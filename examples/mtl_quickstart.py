"""
Multi-task learning quickstart: the same shared-trunk model, trained twice from the same
initialization with `mtl_backward` + `jac_to_grad`, once with the `Mean` aggregator and once with
`UPGrad`. Both runs give each head the full gradient of its own task and differ only in how the
trunk's two task gradients are combined, so the comparison isolates the aggregator.

The two tasks really conflict: the trunk is a one-feature bottleneck, and task 2's target is mostly
the opposite of task 1's (plus a part of its own), at a smaller scale. The mean of the two trunk
gradients is then dominated by task 1 and regularly increases a task's loss (to first order);
UPGrad's update is built never to.

Run: python examples/mtl_quickstart.py
"""

import copy

import torch
from torch import Tensor, nn

from torchjd.aggregation import Aggregator, Mean, UPGrad
from torchjd.autojac import jac_to_grad, mtl_backward

EPOCHS = 8
BATCH_SIZE = 32


def make_data(n: int = 1024) -> tuple[Tensor, Tensor, Tensor]:
    """Two regression tasks on the same inputs, whose targets pull the features opposite ways."""

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 10, generator=generator)
    direction = torch.randn(10, generator=generator) / 10**0.5
    own = torch.sin(2.0 * x[:, :3]).sum(dim=1)
    y1 = 3.0 * (x @ direction) + 0.1 * torch.randn(n, generator=generator)
    y2 = -(x @ direction) + 0.5 * own
    return x, y1.unsqueeze(1), y2.unsqueeze(1)


class TwoTaskModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 1), nn.Tanh())
        self.head1 = nn.Linear(1, 1)
        self.head2 = nn.Linear(1, 1)


def task_losses(
    model: TwoTaskModel, x: Tensor, y1: Tensor, y2: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    features = model.trunk(x)
    loss1 = (model.head1(features) - y1).square().mean()
    loss2 = (model.head2(features) - y2).square().mean()
    return features, loss1, loss2


def train_epoch(
    model: TwoTaskModel, data: tuple[Tensor, Tensor, Tensor], aggregator: Aggregator
) -> float:
    """One epoch of SGD; returns the fraction of steps whose trunk update conflicted with a task."""

    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    trunk_params = list(model.trunk.parameters())
    x, y1, y2 = data
    conflicts, steps = 0, 0
    for start in range(0, len(x), BATCH_SIZE):
        batch = tuple(t[start : start + BATCH_SIZE] for t in (x, y1, y2))
        features, loss1, loss2 = task_losses(model, *batch)
        optimizer.zero_grad()
        # Each head gets its task's gradient in .grad; the trunk gets a [2, ...] Jacobian in .jac,
        # which the aggregator turns into the trunk's .grad.
        mtl_backward([loss1, loss2], features)
        jacobian = torch.cat([p.jac.flatten(1) for p in trunk_params], dim=1)  # [2, n]
        jac_to_grad(trunk_params, aggregator)
        update = torch.cat([p.grad.flatten() for p in trunk_params])
        # A negative inner product with a task's gradient: this step increases that task's loss
        # (beyond float32 rounding, relative to the largest squared task gradient).
        tolerance = 1e-5 * jacobian.norm(dim=1).max() ** 2
        conflicts += int((jacobian @ update).min() < -tolerance)
        steps += 1
        optimizer.step()
    return conflicts / steps


def evaluate(model: TwoTaskModel, data: tuple[Tensor, Tensor, Tensor]) -> tuple[float, float]:
    with torch.no_grad():
        _, loss1, loss2 = task_losses(model, *data)
    return loss1.item(), loss2.item()


def main() -> None:
    torch.manual_seed(0)
    data = make_data()
    models = {"Mean": TwoTaskModel()}
    models["UPGrad"] = copy.deepcopy(models["Mean"])
    aggregators = {"Mean": Mean(), "UPGrad": UPGrad()}
    initial = evaluate(models["Mean"], data)

    print("Training loss of each task (lower is better), and the share of steps whose trunk update")
    print("increased a task's loss to first order (conflicts).")
    print(
        f"{'epoch':>5} | {'Mean: task 1':>12} {'task 2':>7} {'conflicts':>9} | "
        f"{'UPGrad: task 1':>14} {'task 2':>7} {'conflicts':>9}"
    )
    start = f"{initial[0]:.4f} {initial[1]:>7.4f}"
    print(f"{0:>5} | {start:>20} {'':>9} | {start:>22}")
    conflict_shares: dict[str, list[float]] = {"Mean": [], "UPGrad": []}
    for epoch in range(1, EPOCHS + 1):
        row = []
        for name in ("Mean", "UPGrad"):
            conflict_share = train_epoch(models[name], data, aggregators[name])
            conflict_shares[name].append(conflict_share)
            row.append((*evaluate(models[name], data), conflict_share))
        (m1, m2, mc), (u1, u2, uc) = row
        print(f"{epoch:>5} | {m1:>12.4f} {m2:>7.4f} {mc:>9.0%} | {u1:>14.4f} {u2:>7.4f} {uc:>9.0%}")

    mean_losses, upgrad_losses = evaluate(models["Mean"], data), evaluate(models["UPGrad"], data)
    print()
    for task in (0, 1):
        change = (upgrad_losses[task] - mean_losses[task]) / mean_losses[task]
        print(
            f"task {task + 1}: Mean {mean_losses[task]:.4f} (from {initial[task]:.4f}), "
            f"UPGrad {upgrad_losses[task]:.4f} ({change:+.0%} against Mean)"
        )
    better = [t + 1 for t in (0, 1) if upgrad_losses[t] < mean_losses[t]]
    if len(better) == 2:
        verdict = "UPGrad ends lower on both tasks"
    elif better:
        verdict = f"UPGrad ends lower on task {better[0]} only"
    else:
        verdict = "Mean ends lower on both tasks"
    mean_share, upgrad_share = (sum(conflict_shares[n]) / EPOCHS for n in ("Mean", "UPGrad"))
    print(
        f"{verdict}. What to look at: the conflicts column. The mean of the trunk gradients is "
        f"dominated by task 1's larger gradient and increased a task's loss on {mean_share:.0%} "
        f"of the steps; UPGrad, which projects onto the directions that conflict with neither "
        f"task, on {upgrad_share:.0%}."
    )

if __name__ == "__main__":
    main()
