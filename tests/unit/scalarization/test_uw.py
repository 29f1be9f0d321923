import torch
from pytest import mark, raises

from torchjd.scalarization import UW


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uw_value_and_gradients_match_the_hand_formula(dtype: torch.dtype):
    uw = UW(3)
    with torch.no_grad():
        uw.log_var.copy_(torch.tensor([0.0, 1.0, -0.5]))
    losses = torch.tensor([2.0, 0.5, 3.0], dtype=dtype, requires_grad=True)
    value = uw(losses)
    s = uw.log_var.detach().to(dtype)
    L = losses.detach()
    assert value.dtype == dtype
    # sum_i L_i / (2 σ_i²) + log σ_i, with σ_i² = exp(s_i)
    sigma_squared = torch.exp(s)
    expected = (L / (2 * sigma_squared) + 0.5 * torch.log(sigma_squared)).sum()
    torch.testing.assert_close(value, expected)
    gradient_losses, gradient_log_var = torch.autograd.grad(value, [losses, uw.log_var])
    torch.testing.assert_close(gradient_losses, 0.5 * torch.exp(-s))
    assert gradient_log_var.dtype == torch.float32  # the parameter keeps its own dtype
    torch.testing.assert_close(gradient_log_var, (0.5 * (1 - torch.exp(-s) * L)).float())


def test_uw_starts_as_half_the_sum():
    torch.testing.assert_close(UW(2)(torch.tensor([1.0, 3.0])), torch.tensor(2.0))


def test_uw_optimum_for_fixed_losses_is_variance_equal_to_loss():
    losses = torch.tensor([0.05, 1.0, 20.0])
    uw = UW(3)
    optimizer = torch.optim.Adam(uw.parameters(), lr=0.1)
    for _ in range(400):
        optimizer.zero_grad()
        uw(losses).backward()
        optimizer.step()
    # Where the derivative 1/2 - L / (2σ²) vanishes: σ² = L.
    torch.testing.assert_close(torch.exp(uw.log_var.detach()), losses, rtol=1e-3, atol=0.0)


def test_uw_exposes_its_log_variances_as_its_only_parameters():
    uw = UW(4)
    named = dict(uw.named_parameters())
    assert list(named) == ["log_var"]
    assert named["log_var"].requires_grad
    assert torch.equal(named["log_var"], torch.zeros(4))


def test_uw_state_dict_round_trips():
    uw = UW(2)
    with torch.no_grad():
        uw.log_var.copy_(torch.tensor([0.3, -0.7]))
    other = UW(2)
    other.load_state_dict(uw.state_dict())
    losses = torch.tensor([1.0, 2.0])
    assert torch.equal(other(losses), uw(losses))


def test_uw_rejects_losses_of_another_length():
    with raises(ValueError, match="`values`"):
        UW(2)(torch.ones(3))


@mark.parametrize(["shape", "error"], [(0, ValueError), (-2, ValueError), (2.0, TypeError)])
def test_uw_rejects_invalid_shape(shape, error: type[Exception]):
    with raises(error, match="`shape`"):
        UW(shape)
