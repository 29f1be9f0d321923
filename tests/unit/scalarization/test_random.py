import torch
from pytest import mark

from torchjd.scalarization import Random


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_random_is_a_seeded_softmax_of_normal_draws(dtype: torch.dtype):
    losses = torch.tensor([1.0, 3.0, -2.0, 0.5], dtype=dtype, requires_grad=True)
    torch.manual_seed(4)
    value = Random()(losses)
    torch.manual_seed(4)
    weights = torch.softmax(torch.randn(4, dtype=dtype), dim=0)
    assert value.dtype == dtype
    torch.testing.assert_close(value, weights @ losses.detach())
    # The weights are constants: the gradient with respect to the losses is the weights.
    (gradient,) = torch.autograd.grad(value, losses)
    torch.testing.assert_close(gradient, weights)
    assert torch.all(gradient > 0)
    torch.testing.assert_close(gradient.sum(), torch.tensor(1.0, dtype=dtype))


def test_random_is_reproducible_and_varies_between_calls():
    losses = torch.tensor([1.0, 2.0, 3.0])
    scalarizer = Random()
    torch.manual_seed(0)
    first, second = scalarizer(losses), scalarizer(losses)
    torch.manual_seed(0)
    assert torch.equal(scalarizer(losses), first)
    assert not torch.equal(first, second)


def test_random_of_equal_losses_is_that_loss():
    torch.testing.assert_close(Random()(torch.full((5,), 2.0)), torch.tensor(2.0))
