"""
Mixed-precision training with ``torch.amp.GradScaler``: a step whose scaled gradients overflow is
skipped by ``mtl_backward`` + ``jac_to_grad`` exactly as it is by plain autograd (same parameters
afterwards, same scale update), because the aggregators turn non-finite Jacobians into non-finite
updates.
"""

import copy

import torch
from torch import Tensor, nn

from torchjd.aggregation import GradVac, UPGrad
from torchjd.autojac import jac_to_grad, mtl_backward


class _TwoTaskModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
        self.head1 = nn.Linear(8, 1)
        self.head2 = nn.Linear(8, 1)


def _data() -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(16, 4, generator=generator)
    return inputs, torch.randn(16, 1, generator=generator), torch.randn(16, 1, generator=generator)


def _losses(model: _TwoTaskModel, half: bool) -> tuple[Tensor, list[Tensor]]:
    inputs, target1, target2 = _data()
    with torch.autocast("cpu", dtype=torch.float16, enabled=half):
        features = model.trunk(inputs)
        out1, out2 = model.head1(features), model.head2(features)
    losses = [
        nn.functional.mse_loss(out1.float(), target1),
        nn.functional.mse_loss(out2.float(), target2),
    ]
    return features, losses


def _jd_step(model, optimizer, scaler, aggregator, half=True) -> None:
    optimizer.zero_grad()
    features, losses = _losses(model, half)
    mtl_backward([scaler.scale(loss) for loss in losses], features)
    jac_to_grad(model.trunk.parameters(), aggregator)
    scaler.step(optimizer)
    scaler.update()


def _autograd_step(model, optimizer, scaler, half=True) -> None:
    optimizer.zero_grad()
    _, losses = _losses(model, half)
    scaler.scale(losses[0] + losses[1]).backward()
    scaler.step(optimizer)
    scaler.update()


def _setup(init_scale: float):
    torch.manual_seed(0)
    model = _TwoTaskModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, growth_interval=1)
    return model, optimizer, scaler


def _parameters(model: nn.Module) -> list[Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_overflowing_fp16_step_is_skipped_like_plain_autograd():
    # A scale of 2^40 makes the float16 backward overflow to inf.
    jd_model, jd_optimizer, jd_scaler = _setup(2.0**40)
    ag_model, ag_optimizer, ag_scaler = _setup(2.0**40)
    initial = _parameters(jd_model)

    _jd_step(jd_model, jd_optimizer, jd_scaler, UPGrad())
    _autograd_step(ag_model, ag_optimizer, ag_scaler)

    assert not torch.isfinite(ag_model.trunk[0].weight.grad).all()  # it did overflow
    assert not torch.isfinite(jd_model.trunk[0].weight.grad).all()
    for before, jd_param, ag_param in zip(initial, jd_model.parameters(), ag_model.parameters()):
        assert torch.equal(jd_param, before)
        assert torch.equal(ag_param, before)
    assert jd_scaler.get_scale() == ag_scaler.get_scale() == 2.0**39


def test_training_resumes_after_the_skipped_step():
    jd_model, jd_optimizer, jd_scaler = _setup(2.0**40)
    _jd_step(jd_model, jd_optimizer, jd_scaler, UPGrad())  # skipped
    jd_scaler.update(new_scale=2.0**4)
    before = _parameters(jd_model)
    _jd_step(jd_model, jd_optimizer, jd_scaler, UPGrad())
    assert all(torch.isfinite(p).all() for p in jd_model.parameters())
    assert not torch.equal(jd_model.trunk[0].weight, before[0])  # the step was taken
    assert jd_scaler.get_scale() == 2.0**5  # and counted as a successful one


def test_overflowing_gramian_skips_the_step():
    # In float32, a scale of 2^67 keeps every entry of the Jacobian finite but its Gramian (the
    # products of entries of about 1e19 and more) overflows: UPGrad cannot compute the update and
    # returns NaN, so the step is skipped and the scale backs off. Plain autograd, which never
    # forms the Gramian, takes this step.
    jd_model, jd_optimizer, jd_scaler = _setup(2.0**67)
    initial = _parameters(jd_model)
    optimizer_step_taken = []
    jd_optimizer.step = lambda *args, **kwargs: optimizer_step_taken.append(True)

    jd_optimizer.zero_grad()
    features, losses = _losses(jd_model, half=False)
    mtl_backward([jd_scaler.scale(loss) for loss in losses], features, retain_graph=False)
    jacobians = [p.jac for p in jd_model.trunk.parameters()]
    assert all(torch.isfinite(j).all() for j in jacobians)
    matrix = torch.cat([j.flatten(1) for j in jacobians], dim=1)
    assert not torch.isfinite(matrix @ matrix.T).all()
    jac_to_grad(jd_model.trunk.parameters(), UPGrad())
    jd_scaler.step(jd_optimizer)
    jd_scaler.update()

    assert optimizer_step_taken == []
    for before, param in zip(initial, jd_model.parameters()):
        assert torch.equal(param, before)
    assert jd_scaler.get_scale() == 2.0**66


def test_stateful_aggregator_is_unchanged_by_the_skipped_step():
    jd_model, jd_optimizer, jd_scaler = _setup(2.0**4)
    aggregator = GradVac()
    _jd_step(jd_model, jd_optimizer, jd_scaler, aggregator)  # a normal step sets the state
    state = copy.deepcopy(aggregator.state_dict())
    jd_scaler.update(new_scale=2.0**40)
    _jd_step(jd_model, jd_optimizer, jd_scaler, aggregator)  # skipped
    assert jd_scaler.get_scale() == 2.0**39
    for key, value in aggregator.state_dict().items():
        assert torch.equal(value, state[key]), key
