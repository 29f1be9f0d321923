import torch
from pytest import mark

from torchjd.scalarization import Sum


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sum_is_the_sum_and_its_gradient_is_ones(dtype: torch.dtype):
    losses = torch.tensor([1.0, -2.0, 4.5], dtype=dtype, requires_grad=True)
    value = Sum()(losses)
    assert value.dtype == dtype
    assert torch.equal(value, torch.tensor(3.5, dtype=dtype))
    (gradient,) = torch.autograd.grad(value, losses)
    assert torch.equal(gradient, torch.ones(3, dtype=dtype))


def test_sum_of_one_loss_is_the_loss():
    assert torch.equal(Sum()(torch.tensor([2.5])), torch.tensor(2.5))
