"""
Tests of :mod:`torchjd.distributed._fsdp` on a one-rank FSDP2 job in this process (no launch): the
sharded path against plain Jacobian descent, bit for bit where the arithmetic is the same. The
multi-rank behaviour is tested in ``tests/integration/test_distributed_fsdp.py``.
"""

from collections.abc import Iterator

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from torch.testing import assert_close

from torchjd.aggregation import MGDA, ConFIG, Mean, UPGrad
from torchjd.autojac import jac_to_grad, mtl_backward
from torchjd.distributed._fsdp import any_sharded, to_unsharded


@pytest.fixture(scope="module")
def one_rank_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    store = tmp_path_factory.mktemp("fsdp") / "store"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def new_model() -> nn.Module:
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4))
    return nn.ModuleDict({"trunk": trunk, "head1": nn.Linear(4, 1), "head2": nn.Linear(4, 2)}).double()


def step(model: nn.Module, aggregator: object) -> list[torch.Tensor]:
    """One multi-task step's trunk gradients (gathered when sharded), from fixed data."""

    generator = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    features = model["trunk"](x)
    losses = [model["head1"](features).square().mean(), model["head2"](features).abs().mean()]
    mtl_backward(losses, features)
    jac_to_grad(list(model["trunk"].parameters()), aggregator)  # type: ignore[arg-type]
    return [
        (p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad).clone()
        for p in model["trunk"].parameters()
    ]


@pytest.mark.parametrize("aggregator", [UPGrad(), MGDA(), Mean()], ids=str)
@pytest.mark.parametrize("reshard_after_forward", [True, False])
def test_one_rank_fsdp_matches_plain_jacobian_descent(
    one_rank_group: None, aggregator: object, reshard_after_forward: bool
) -> None:
    expected = step(new_model(), aggregator)
    model = new_model()
    mesh = init_device_mesh("cpu", (1,))
    for layer in model["trunk"]:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh, reshard_after_forward=reshard_after_forward)
    actual = step(model, aggregator)
    assert all(isinstance(p.grad, DTensor) for p in model["trunk"].parameters())
    for actual_grad, expected_grad in zip(actual, expected):
        assert_close(actual_grad, expected_grad, rtol=1e-12, atol=1e-14)


def test_matrix_based_aggregator_raises_before_writing(one_rank_group: None) -> None:
    model = new_model()
    fully_shard(model["trunk"], mesh=init_device_mesh("cpu", (1,)))
    features = model["trunk"](torch.randn(6, 3, dtype=torch.float64))
    mtl_backward([model["head1"](features).sum(), model["head2"](features).sum()], features)
    trunk = list(model["trunk"].parameters())
    with pytest.raises(ValueError, match="ConFIG"):
        jac_to_grad(trunk, ConFIG())
    assert all(p.grad is None and hasattr(p, "jac") for p in trunk)


def test_plain_tensors_pass_through() -> None:
    tensors = [torch.zeros(2, requires_grad=True), nn.Parameter(torch.ones(3))]
    assert to_unsharded(tensors, 2, "inputs") == tensors
    assert not any_sharded(tensors)
