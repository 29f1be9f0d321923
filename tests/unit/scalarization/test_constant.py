import torch
from pytest import mark, raises

from torchjd.scalarization import Constant


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_constant_is_the_weighted_sum_and_its_gradient_is_the_weights(dtype: torch.dtype):
    weights = torch.tensor([1.0, 0.5, -2.0])  # float32 weights, cast to the losses' dtype
    losses = torch.tensor([2.0, 4.0, 1.0], dtype=dtype, requires_grad=True)
    value = Constant(weights)(losses)
    assert value.dtype == dtype
    assert torch.equal(value, torch.tensor(2.0, dtype=dtype))
    (gradient,) = torch.autograd.grad(value, losses)
    assert torch.equal(gradient, weights.to(dtype))


def test_constant_copies_its_weights():
    weights = torch.tensor([1.0, 1.0])
    scalarizer = Constant(weights)
    weights[0] = 100.0
    assert torch.equal(scalarizer(torch.tensor([1.0, 1.0])), torch.tensor(2.0))


def test_constant_weights_are_a_settable_hyper_parameter_of_any_shape():
    scalarizer = Constant(torch.tensor([3.0, 4.0]))
    scalarizer.weights = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert torch.equal(scalarizer(torch.ones(2, 2)), torch.tensor(10.0))
    assert scalarizer.state_dict() == {}  # a hyper-parameter, not state


def test_constant_rejects_losses_of_another_length():
    with raises(ValueError, match="`weights`"):
        Constant(torch.tensor([1.0, 2.0]))(torch.tensor([1.0, 2.0, 3.0]))


@mark.parametrize(
    ["weights", "error"],
    [
        ([1.0, 2.0], TypeError),
        (torch.tensor([1, 2]), TypeError),
        (torch.zeros(0), ValueError),
        (torch.tensor([1.0, float("nan")]), ValueError),
        (torch.tensor([1.0, float("inf")]), ValueError),
    ],
)
def test_constant_rejects_invalid_weights(weights, error: type[Exception]):
    with raises(error, match="`weights`"):
        Constant(weights)
