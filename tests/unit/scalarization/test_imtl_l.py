import torch
from pytest import mark, raises

from torchjd.scalarization import IMTLL


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_imtl_l_value_and_gradients_match_the_hand_formula(dtype: torch.dtype):
    imtl_l = IMTLL(3)
    with torch.no_grad():
        imtl_l.log_scale.copy_(torch.tensor([0.0, 1.0, -0.5]))
    losses = torch.tensor([2.0, 0.5, 3.0], dtype=dtype, requires_grad=True)
    value = imtl_l(losses)
    s = imtl_l.log_scale.detach().to(dtype)
    L = losses.detach()
    assert value.dtype == dtype
    torch.testing.assert_close(value, (torch.exp(s) * L - s).sum())
    gradient_losses, gradient_log_scale = torch.autograd.grad(value, [losses, imtl_l.log_scale])
    torch.testing.assert_close(gradient_losses, torch.exp(s))
    torch.testing.assert_close(gradient_log_scale, (torch.exp(s) * L - 1).float())


def test_imtl_l_starts_as_the_sum():
    torch.testing.assert_close(IMTLL(2)(torch.tensor([1.0, 3.0])), torch.tensor(4.0))


def test_imtl_l_optimum_for_fixed_losses_makes_every_scaled_loss_one():
    losses = torch.tensor([0.05, 1.0, 20.0])
    imtl_l = IMTLL(3)
    optimizer = torch.optim.Adam(imtl_l.parameters(), lr=0.1)
    for _ in range(400):
        optimizer.zero_grad()
        imtl_l(losses).backward()
        optimizer.step()
    scaled = torch.exp(imtl_l.log_scale.detach()) * losses
    torch.testing.assert_close(scaled, torch.ones(3), rtol=1e-3, atol=0.0)


def test_imtl_l_exposes_its_log_scale_as_its_only_parameters():
    names = [name for name, _ in IMTLL(2).named_parameters()]
    assert names == ["log_scale"]


def test_imtl_l_state_dict_round_trips():
    imtl_l = IMTLL(2)
    with torch.no_grad():
        imtl_l.log_scale.copy_(torch.tensor([0.3, -0.7]))
    other = IMTLL(2)
    other.load_state_dict(imtl_l.state_dict())
    losses = torch.tensor([1.0, 2.0])
    assert torch.equal(other(losses), imtl_l(losses))


def test_imtl_l_rejects_losses_of_another_length():
    with raises(ValueError, match="`values`"):
        IMTLL(2)(torch.ones(1))


@mark.parametrize(["shape", "error"], [(0, ValueError), (True, TypeError), ("2", TypeError)])
def test_imtl_l_rejects_invalid_shape(shape, error: type[Exception]):
    with raises(error, match="`shape`"):
        IMTLL(shape)
