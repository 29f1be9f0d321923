import torch
from pytest import mark

from torchjd.scalarization import Mean


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mean_is_the_average_and_its_gradient_is_one_over_m(dtype: torch.dtype):
    losses = torch.tensor([1.0, -2.0, 4.0, 1.0], dtype=dtype, requires_grad=True)
    value = Mean()(losses)
    assert value.dtype == dtype
    assert torch.equal(value, torch.tensor(1.0, dtype=dtype))
    (gradient,) = torch.autograd.grad(value, losses)
    assert torch.equal(gradient, torch.full((4,), 0.25, dtype=dtype))
