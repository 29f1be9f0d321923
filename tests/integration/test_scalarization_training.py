"""Trains a shared-trunk two-task regression model with scalarizers of each kind."""

import torch
from pytest import mark
from torch import Tensor, nn

from torchjd.scalarization import DWA, FAMO, UW, Scalarizer


class _TwoTaskModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
        self.heads = nn.ModuleList([nn.Linear(32, 1), nn.Linear(32, 1)])

    def forward(self, inputs: Tensor) -> list[Tensor]:
        features = self.trunk(inputs)
        return [head(features).squeeze(1) for head in self.heads]


def _make_data() -> tuple[Tensor, Tensor, Tensor]:
    inputs = torch.randn(256, 8)
    # Two related targets (smooth functions of shared random features) of very different scales,
    # as in multi-task learning.
    features = torch.tanh(inputs @ torch.randn(8, 4))
    target_1 = features @ torch.randn(4)
    target_2 = 10.0 * (features @ torch.randn(4)) + 5.0
    return inputs, target_1, target_2


def _compute_losses(model: nn.Module, inputs: Tensor, target_1: Tensor, target_2: Tensor) -> Tensor:
    output_1, output_2 = model(inputs)
    return torch.stack([(output_1 - target_1).pow(2).mean(), (output_2 - target_2).pow(2).mean()])


@mark.parametrize(
    "make_scalarizer",
    [lambda: UW(2), DWA, lambda: FAMO(2)],
    ids=["UW", "DWA", "FAMO"],
)
def test_training_with_a_scalarizer_decreases_both_losses(make_scalarizer):
    torch.manual_seed(0)
    inputs, target_1, target_2 = _make_data()
    model = _TwoTaskModel()
    scalarizer: Scalarizer = make_scalarizer()
    # The scalarizer's own parameters (UW's log-variances) are trained with the model's; FAMO's
    # logits are learned in its update step, so giving them to the optimizer is harmless.
    optimizer = torch.optim.Adam([*model.parameters(), *scalarizer.parameters()], lr=1e-2)
    with torch.no_grad():
        initial = _compute_losses(model, inputs, target_1, target_2)

    for _ in range(10):
        for batch in torch.randperm(256).split(32):
            batch_targets = (target_1[batch], target_2[batch])
            optimizer.zero_grad()
            losses = _compute_losses(model, inputs[batch], *batch_targets)
            scalarizer(losses).backward()
            optimizer.step()
            if isinstance(scalarizer, FAMO):
                with torch.no_grad():
                    scalarizer.update(_compute_losses(model, inputs[batch], *batch_targets))
        if isinstance(scalarizer, DWA):
            scalarizer.step()

    with torch.no_grad():
        final = _compute_losses(model, inputs, target_1, target_2)
    assert torch.all(torch.isfinite(final))
    assert torch.all(final < 0.75 * initial), (initial, final)
