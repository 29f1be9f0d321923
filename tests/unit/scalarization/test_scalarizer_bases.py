import copy
import inspect

import torch
from pytest import mark, raises
from torch import Tensor

from torchjd import Stateful, scalarization
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
    Sum,
)


def _all_scalarizers(shape: tuple[int, ...] = (3,)) -> list[Scalarizer]:
    return [
        Sum(),
        Mean(),
        Constant(torch.linspace(0.5, 2.0, int(torch.Size(shape).numel())).reshape(shape)),
        Random(),
        GeometricMean(),
        STCH(),
        UW(shape),
        IMTLL(shape),
        DWA(),
        FAMO(shape),
        COSMOS(lambda_=1.0),
        PBI(),
    ]


SCALARIZERS = _all_scalarizers()
IDS = [str(s) for s in SCALARIZERS]
STATEFUL = (UW, IMTLL, DWA, FAMO)


def test_all_scalarizers_are_exported_as_in_torchjd_0_18():
    exported = {getattr(scalarization, name) for name in scalarization.__all__}
    assert {type(s) for s in SCALARIZERS} | {Scalarizer} == exported
    assert len(scalarization.__all__) == 13


def test_stateful_scalarizers_are_torchjd_stateful():
    for scalarizer in SCALARIZERS:
        assert isinstance(scalarizer, Stateful) == isinstance(scalarizer, STATEFUL)


@mark.parametrize(
    ["cls", "expected"],
    [
        (Constant, "(weights: torch.Tensor) -> None"),
        (COSMOS, "(lambda_: float, weights: torch.Tensor | None = None) -> None"),
        (DWA, "(temperature: float = 2.0) -> None"),
        (UW, "(shape: int | collections.abc.Sequence[int]) -> None"),
        (IMTLL, "(shape: int | collections.abc.Sequence[int]) -> None"),
        (
            STCH,
            "(mu: float = 1.0, weights: torch.Tensor | None = None, "
            "reference: torch.Tensor | None = None) -> None",
        ),
        (
            PBI,
            "(theta: float = 5.0, weights: torch.Tensor | None = None, "
            "reference: torch.Tensor | None = None) -> None",
        ),
        (
            FAMO,
            "(shape: int | collections.abc.Sequence[int], min_losses: torch.Tensor | None = None, "
            "lr: float = 0.025, weight_decay: float = 0.001, *, epsilon: float = 1e-08) -> None",
        ),
    ],
)
def test_signatures_extend_those_of_torchjd_0_18(cls: type, expected: str):
    # The published names, order and defaults; defaults where 0.18 has none, and FAMO's
    # keyword-only epsilon, are supersets.
    assert str(inspect.signature(cls)) == expected


@mark.parametrize("scalarizer", SCALARIZERS, ids=IDS)
def test_forward_and_call_take_values_positional_only(scalarizer: Scalarizer):
    for method in (type(scalarizer).forward, type(scalarizer).__call__):
        values = inspect.signature(method).parameters["values"]
        assert values.kind is inspect.Parameter.POSITIONAL_ONLY


@mark.parametrize("scalarizer", SCALARIZERS, ids=IDS)
@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_returns_a_scalar_of_the_values_dtype_with_a_gradient(
    scalarizer: Scalarizer, dtype: torch.dtype
):
    scalarizer = copy.deepcopy(scalarizer)
    values = torch.tensor([0.5, 1.5, 3.0], dtype=dtype, requires_grad=True)
    value = scalarizer(values)
    assert value.shape == ()
    assert value.dtype == dtype
    assert torch.isfinite(value)
    (gradient,) = torch.autograd.grad(value, values)
    assert gradient.dtype == dtype
    assert torch.all(torch.isfinite(gradient))


@mark.parametrize("shape", [(), (2, 3)], ids=["scalar", "matrix"])
def test_values_of_any_shape_match_their_flattened_vector(shape: tuple[int, ...]):
    # Each scalarizer treats the elements of values of any shape as the objectives: the result
    # equals that of the same scalarizer built for the flattened vector.
    torch.manual_seed(0)
    values = torch.rand(shape, dtype=torch.float64) + 0.5
    for shaped, flat in zip(_all_scalarizers(shape), _all_scalarizers((values.numel(),))):
        if isinstance(shaped, Random):
            torch.manual_seed(1)
            expected = flat.double()(values.flatten())
            torch.manual_seed(1)
        else:
            expected = flat.double()(values.flatten())
        torch.testing.assert_close(shaped.double()(values), expected, msg=str(shaped))


@mark.parametrize("scalarizer", SCALARIZERS, ids=IDS)
def test_rejects_empty_values(scalarizer: Scalarizer):
    with raises(ValueError, match="`values`"):
        scalarizer(torch.zeros(0))


@mark.parametrize("scalarizer", SCALARIZERS, ids=IDS)
def test_rejects_values_of_another_shape_than_its_parameters(scalarizer: Scalarizer):
    if isinstance(scalarizer, (Sum, Mean, Random, GeometricMean, STCH, DWA, COSMOS, PBI)):
        return  # nothing sized
    with raises(ValueError, match="`values`"):
        scalarizer(torch.ones(4))


@mark.parametrize("scalarizer", SCALARIZERS, ids=IDS)
def test_rejects_non_tensor_and_integer_values(scalarizer: Scalarizer):
    with raises(TypeError, match="`values`"):
        scalarizer([1.0, 2.0, 3.0])  # type: ignore[arg-type]
    with raises(TypeError, match="`values`"):
        scalarizer(torch.tensor([1, 2, 3]))


@mark.parametrize("scalarizer", SCALARIZERS, ids=IDS)
@mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_values_give_a_non_finite_result(scalarizer: Scalarizer, bad: float):
    # So that torch.amp.GradScaler sees the overflow and skips the step.
    scalarizer = copy.deepcopy(scalarizer)
    values = torch.tensor([0.5, bad, 3.0])
    assert not torch.isfinite(scalarizer(values))


@mark.parametrize("scalarizer", SCALARIZERS, ids=IDS)
@mark.parametrize("scale", [1e-30, 1e30], ids=["tiny", "huge"])
def test_float32_values_at_extreme_scales_match_float64(scalarizer: Scalarizer, scale: float):
    scalarizer = copy.deepcopy(scalarizer)
    values = torch.tensor([0.5, 1.5, 3.0], dtype=torch.float64) * scale
    value = scalarizer(values.float())
    assert torch.isfinite(value), value
    if isinstance(scalarizer, Random):  # a random convex combination
        assert values.min() * (1 - 1e-6) <= value <= values.max() * (1 + 1e-6)
        return
    expected = copy.deepcopy(scalarizer).double()(values)
    torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=0.0)


@mark.parametrize("scalarizer", SCALARIZERS, ids=IDS)
@mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_values_work_and_keep_their_dtype(scalarizer: Scalarizer, dtype: torch.dtype):
    scalarizer = copy.deepcopy(scalarizer)
    values = torch.tensor([0.5, 1.5, 3.0], requires_grad=True)
    if isinstance(scalarizer, Random):
        torch.manual_seed(0)
    expected = copy.deepcopy(scalarizer)(values.detach())
    if isinstance(scalarizer, Random):
        torch.manual_seed(0)
    half = values.detach().to(dtype).requires_grad_()
    value = scalarizer(half)
    assert value.dtype == dtype
    torch.testing.assert_close(value.float(), expected, rtol=2e-2, atol=2e-2)
    (gradient,) = torch.autograd.grad(value, half)
    assert gradient.dtype == dtype
    assert torch.all(torch.isfinite(gradient))


@mark.parametrize("scalarizer", SCALARIZERS, ids=IDS)
def test_repr_is_name_of_extra_repr_and_str_is_name(scalarizer: Scalarizer):
    name = type(scalarizer).__name__
    assert str(scalarizer) == name
    assert repr(scalarizer) == f"{name}({scalarizer.extra_repr()})"


def test_reprs_show_the_parameters():
    assert repr(Sum()) == "Sum()"
    assert repr(Constant(torch.tensor([1.0, 2.0]))) == "Constant(weights=tensor([1., 2.]))"
    assert repr(STCH()) == "STCH(mu=1.0, weights=None, reference=None)"
    assert repr(UW(2)) == "UW(shape=(2,))"
    assert repr(IMTLL([2, 2])) == "IMTLL(shape=(2, 2))"
    assert repr(DWA()) == "DWA(temperature=2.0)"
    assert repr(FAMO(2)) == "FAMO(shape=(2,), lr=0.025, weight_decay=0.001, epsilon=1e-08)"
    assert repr(COSMOS(lambda_=0.5)) == "COSMOS(lambda_=0.5, weights=None)"
    assert repr(PBI(theta=2.0)) == "PBI(theta=2.0, weights=None, reference=None)"


@mark.parametrize(
    ["scalarizer", "name", "value", "bad"],
    [
        (STCH(), "mu", 0.5, 0.0),
        (STCH(), "weights", torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, -1.0, 0.0])),
        (STCH(), "reference", torch.zeros(3), torch.tensor([0.0, float("nan"), 0.0])),
        (PBI(), "theta", 1.0, -1.0),
        (PBI(), "weights", torch.tensor([1.0, 0.0, 0.0]), torch.zeros(3)),
        (PBI(), "reference", torch.zeros(3), torch.tensor([1, 2, 3])),
        (COSMOS(1.0), "lambda_", 2.0, float("inf")),
        (COSMOS(1.0), "weights", torch.tensor([1.0, 0.0, 0.0]), [1.0, 0.0, 0.0]),
        (Constant(torch.ones(3)), "weights", torch.tensor([1.0, 2.0, 3.0]), torch.zeros(0)),
        (DWA(), "temperature", 1.0, "2"),
        (FAMO(3), "lr", 0.1, 0.0),
        (FAMO(3), "weight_decay", 0.0, -0.1),
        (FAMO(3), "epsilon", 1e-6, float("nan")),
        (FAMO(3), "min_losses", torch.full((3,), -1.0), torch.zeros(2)),
    ],
)
def test_hyper_parameters_are_validated_settable_attributes(
    scalarizer: Scalarizer, name: str, value: object, bad: object
):
    scalarizer = copy.deepcopy(scalarizer)
    setattr(scalarizer, name, value)
    stored = getattr(scalarizer, name)
    if isinstance(value, Tensor):
        assert torch.equal(stored, value)
    else:
        assert stored == value
    assert name in repr(scalarizer)
    with raises((ValueError, TypeError), match=f"`{name}`"):
        setattr(scalarizer, name, bad)
    assert getattr(scalarizer, name) is stored  # unchanged by the failed assignment


def test_a_new_value_takes_effect_on_the_next_call():
    values = torch.tensor([1.0, 3.0])
    stch = STCH(mu=1.0)
    before = stch(values)
    stch.mu = 0.01
    stch.weights = torch.ones(2)
    assert not torch.allclose(before, stch(values))
    torch.testing.assert_close(stch(values), torch.tensor(3.0))


@mark.parametrize("scalarizer", SCALARIZERS, ids=IDS)
def test_follows_to_float64(scalarizer: Scalarizer):
    scalarizer = copy.deepcopy(scalarizer).to(torch.float64)
    for tensor in [*scalarizer.parameters(), *scalarizer.buffers()]:
        assert not tensor.is_floating_point() or tensor.dtype == torch.float64
    values = torch.tensor([0.5, 1.5, 3.0], dtype=torch.float64)
    assert scalarizer(values).dtype == torch.float64


@mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@mark.parametrize("scalarizer", SCALARIZERS, ids=IDS)
def test_runs_on_the_device_of_the_values(scalarizer: Scalarizer):
    device = torch.device("cuda")
    scalarizer = copy.deepcopy(scalarizer).to(device)
    values = torch.tensor([0.5, 1.5, 3.0], device=device, requires_grad=True)
    value = scalarizer(values)
    assert value.device.type == "cuda"
    (gradient,) = torch.autograd.grad(value, values)
    assert gradient.device.type == "cuda"
    if isinstance(scalarizer, DWA):
        scalarizer.step()
        assert scalarizer.loss_history.device.type == "cuda"
    if isinstance(scalarizer, FAMO):
        scalarizer.update(values.detach() / 2)
        assert scalarizer.logits.device.type == "cuda"
