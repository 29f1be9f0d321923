import copy

import torch
from pytest import mark, raises
from torch import Tensor

from torchjd import scalarization
from torchjd.scalarization import (
    COSMOS,
    DWA,
    FAMO,
    IMTLL,
    PBI,
    STCH,
    UW,
    Constant,
    GeometricMean,
    Mean,
    Random,
    Scalarizer,
    StatefulScalarizer,
    Sum,
)


def _all_scalarizers() -> list[Scalarizer]:
    return [
        Sum(),
        Mean(),
        Constant(torch.tensor([1.0, 2.0, 0.5])),
        Random(),
        GeometricMean(),
        STCH(),
        UW(num_tasks=3),
        IMTLL(num_tasks=3),
        DWA(),
        FAMO(num_tasks=3),
        COSMOS(lambda_=1.0),
        PBI(),
    ]


SCALARIZERS = _all_scalarizers()
IDS = [str(s) for s in SCALARIZERS]


def test_all_scalarizers_are_exported():
    exported = {getattr(scalarization, name) for name in scalarization.__all__}
    assert {type(s) for s in SCALARIZERS} | {Scalarizer, StatefulScalarizer} == exported


@mark.parametrize("scalarizer", SCALARIZERS, ids=IDS)
@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_returns_a_scalar_of_the_losses_dtype_with_a_gradient(
    scalarizer: Scalarizer, dtype: torch.dtype
):
    scalarizer = copy.deepcopy(scalarizer)
    losses = torch.tensor([0.5, 1.5, 3.0], dtype=dtype, requires_grad=True)
    value = scalarizer(losses)
    assert value.shape == ()
    assert value.dtype == dtype
    assert torch.isfinite(value)
    (gradient,) = torch.autograd.grad(value, losses)
    assert gradient.dtype == dtype
    assert torch.all(torch.isfinite(gradient))


@mark.parametrize("scalarizer", SCALARIZERS, ids=IDS)
@mark.parametrize(
    "losses",
    [torch.tensor(1.0), torch.zeros(0), torch.ones(3, 1), torch.ones(2, 3)],
    ids=["scalar", "empty", "column", "matrix"],
)
def test_rejects_losses_that_are_not_a_non_empty_vector(scalarizer: Scalarizer, losses: Tensor):
    with raises(ValueError, match="`losses`"):
        scalarizer(losses)


@mark.parametrize("scalarizer", SCALARIZERS, ids=IDS)
def test_rejects_non_tensor_and_integer_losses(scalarizer: Scalarizer):
    with raises(TypeError, match="`losses`"):
        scalarizer([1.0, 2.0, 3.0])  # type: ignore[arg-type]
    with raises(TypeError, match="`losses`"):
        scalarizer(torch.tensor([1, 2, 3]))


@mark.parametrize("scalarizer", SCALARIZERS, ids=IDS)
def test_repr_is_name_of_extra_repr_and_str_is_name(scalarizer: Scalarizer):
    name = type(scalarizer).__name__
    assert str(scalarizer) == name
    assert repr(scalarizer) == f"{name}({scalarizer.extra_repr()})"


def test_reprs_show_the_parameters():
    assert repr(Sum()) == "Sum()"
    assert repr(Constant(torch.tensor([1.0, 2.0]))) == "Constant(weights=tensor([1., 2.]))"
    assert repr(STCH()) == "STCH(mu=1.0, preference=None, ideal_point=None)"
    assert repr(UW(num_tasks=2)) == "UW(num_tasks=2)"
    assert repr(IMTLL(num_tasks=4)) == "IMTLL(num_tasks=4)"
    assert repr(DWA()) == "DWA(T=2.0)"
    assert repr(FAMO(2)) == "FAMO(num_tasks=2, w_lr=0.025, gamma=0.001, epsilon=1e-08)"
    assert repr(COSMOS(lambda_=0.5)) == "COSMOS(lambda_=0.5, preference=None)"
    assert repr(PBI(theta=2.0)) == "PBI(theta=2.0, preference=None, ideal_point=None)"


@mark.parametrize("scalarizer", SCALARIZERS, ids=IDS)
def test_follows_to_float64(scalarizer: Scalarizer):
    scalarizer = copy.deepcopy(scalarizer).to(torch.float64)
    for tensor in [*scalarizer.parameters(), *scalarizer.buffers()]:
        assert not tensor.is_floating_point() or tensor.dtype == torch.float64
    losses = torch.tensor([0.5, 1.5, 3.0], dtype=torch.float64)
    assert scalarizer(losses).dtype == torch.float64


@mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@mark.parametrize("scalarizer", SCALARIZERS, ids=IDS)
def test_runs_on_the_device_of_the_losses(scalarizer: Scalarizer):
    device = torch.device("cuda")
    scalarizer = copy.deepcopy(scalarizer).to(device)
    losses = torch.tensor([0.5, 1.5, 3.0], device=device, requires_grad=True)
    value = scalarizer(losses)
    assert value.device.type == "cuda"
    (gradient,) = torch.autograd.grad(value, losses)
    assert gradient.device.type == "cuda"
    if isinstance(scalarizer, DWA):
        scalarizer.end_epoch()
        assert scalarizer.loss_history.device.type == "cuda"
    if isinstance(scalarizer, FAMO):
        scalarizer.update(losses.detach() / 2)
        assert scalarizer.logits.device.type == "cuda"
