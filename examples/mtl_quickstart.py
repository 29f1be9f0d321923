"""
Multi-task learning quickstart: trains a shared trunk with two task heads on synthetic data, once
with Jacobian descent (`mtl_backward` + `jac_to_grad` with UPGrad) and once on the mean of the two
losses, from the same initialization, and prints both tasks' losses after each epoch.

Run: python examples/mtl_quickstart.py
"""

import copy

import torch
from torch import Tensor, nn

from torchjd.aggregation import UPGrad
from torchjd.autojac import jac_to_grad, mtl_backward

EPOCHS = 8
BATCH_SIZE = 32


def make_data(n: int = 1024) -> tuple[Tensor, Tensor, Tensor]:
    """Two regression tasks on the same inputs, whose targets pull the features different ways."""

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 10, generator=generator)
    direction = torch.randn(10, generator=generator)
    y1 = (x @ direction).unsqueeze(1) + 0.1 * torch.randn(n, 1, generator=generator)
    y2 = (torch.sin(x[:, :3]).sum(dim=1) - 0.5 * (x @ direction)).unsqueeze(1)
    return x, y1, y2


class TwoTaskModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU())
        self.head1 = nn.Linear(16, 1)
        self.head2 = nn.Linear(16, 1)


def task_losses(model: TwoTaskModel, x: Tensor, y1: Tensor, y2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    features = model.trunk(x)
    loss1 = (model.head1(features) - y1).square().mean()
    loss2 = (model.head2(features) - y2).square().mean()
    return features, loss1, loss2


def train_epoch(model: TwoTaskModel, data: tuple[Tensor, Tensor, Tensor], jacobian_descent: bool) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02)
    aggregator = UPGrad()
    x, y1, y2 = data
    for start in range(0, len(x), BATCH_SIZE):
        batch = x[start : start + BATCH_SIZE], y1[start : start + BATCH_SIZE], y2[start : start + BATCH_SIZE]
        features, loss1, loss2 = task_losses(model, *batch)
        optimizer.zero_grad()
        if jacobian_descent:
            # Heads get their task's gradient in .grad; the trunk gets a [2, ...] Jacobian in .jac,
            # which UPGrad turns into a .grad that conflicts with neither task.
            mtl_backward([loss1, loss2], features)
            jac_to_grad(model.trunk.parameters(), aggregator)
        else:
            ((loss1 + loss2) / 2).backward()
        optimizer.step()


def evaluate(model: TwoTaskModel, data: tuple[Tensor, Tensor, Tensor]) -> tuple[float, float]:
    with torch.no_grad():
        _, loss1, loss2 = task_losses(model, *data)
    return loss1.item(), loss2.item()


def main() -> None:
    torch.manual_seed(0)
    data = make_data()
    jd_model = TwoTaskModel()
    mean_model = copy.deepcopy(jd_model)

    print(f"{'epoch':>5} | {'UPGrad task 1':>13} {'UPGrad task 2':>13} | {'mean task 1':>11} {'mean task 2':>11}")
    print("-" * 63)
    for epoch in range(1, EPOCHS + 1):
        train_epoch(jd_model, data, jacobian_descent=True)
        train_epoch(mean_model, data, jacobian_descent=False)
        jd1, jd2 = evaluate(jd_model, data)
        mean1, mean2 = evaluate(mean_model, data)
        print(f"{epoch:>5} | {jd1:>13.4f} {jd2:>13.4f} | {mean1:>11.4f} {mean2:>11.4f}")


if __name__ == "__main__":
    main()
