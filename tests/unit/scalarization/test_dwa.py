import copy

import torch
from pytest import mark, raises

from torchjd.scalarization import DWA


def _run_epochs(dwa: DWA, epochs: list[list[list[float]]], dtype=torch.float32) -> None:
    """Calls ``dwa`` on every step's losses of every epoch, closing each epoch."""

    for epoch in epochs:
        for step_losses in epoch:
            dwa(torch.tensor(step_losses, dtype=dtype))
        dwa.step()


def _expected_weights(previous: list[float], last: list[float], T: float) -> torch.Tensor:
    ratios = torch.tensor(last, dtype=torch.float64) / torch.tensor(previous, dtype=torch.float64)
    return len(last) * torch.exp(ratios / T) / torch.exp(ratios / T).sum()


def test_dwa_weights_are_ones_during_the_first_two_epochs():
    dwa = DWA()
    losses = torch.tensor([5.0, 1.0, 0.1], requires_grad=True)
    for _ in range(2):
        (gradient,) = torch.autograd.grad(dwa(losses), losses)
        assert torch.equal(gradient, torch.ones(3))
        dwa.step()


@mark.parametrize("dtype", [torch.float32, torch.float64])
@mark.parametrize("temperature", [2.0, 0.5, 10.0])
def test_dwa_weights_follow_the_ratio_of_the_last_two_epochs(dtype: torch.dtype, temperature: float):
    T = temperature
    dwa = DWA(temperature=T)
    # Epoch averages: (3, 2), (1, 1.8), (0.5, 1.7).
    _run_epochs(dwa, [[[4.0, 2.0], [2.0, 2.0]], [[1.0, 1.8]], [[0.5, 1.7], [0.5, 1.7]]], dtype)
    losses = torch.tensor([2.0, 3.0], dtype=dtype, requires_grad=True)
    value = dwa(losses)
    expected = _expected_weights([1.0, 1.8], [0.5, 1.7], T).to(dtype)
    assert value.dtype == dtype
    torch.testing.assert_close(value, expected @ losses.detach())
    (gradient,) = torch.autograd.grad(value, losses)  # the weights are constants
    torch.testing.assert_close(gradient, expected)
    torch.testing.assert_close(dwa.weights(losses.detach()), expected)


def test_dwa_gives_more_weight_to_the_task_whose_loss_went_down_slower():
    dwa = DWA()
    _run_epochs(dwa, [[[1.0, 1.0]], [[0.5, 0.99]]])
    weights = dwa.weights(torch.ones(2))
    assert weights[1] > weights[0]
    torch.testing.assert_close(weights.sum(), torch.tensor(2.0))


def test_dwa_uses_the_average_loss_of_each_epoch():
    averaged, explicit = DWA(), DWA()
    _run_epochs(averaged, [[[1.0, 4.0], [3.0, 2.0]], [[1.0, 1.0], [1.0, 2.0], [4.0, 0.0]]])
    for epoch_losses in ([2.0, 3.0], [2.0, 1.0]):
        explicit.step(torch.tensor(epoch_losses))
    assert torch.equal(averaged.loss_history, explicit.loss_history)
    torch.testing.assert_close(averaged.weights(torch.ones(2)), explicit.weights(torch.ones(2)))


def test_dwa_step_with_explicit_values_ignores_the_recorded_ones():
    dwa = DWA()
    dwa(torch.tensor([100.0, 100.0]))
    dwa.step(torch.tensor([2.0, 1.0]))
    assert torch.equal(dwa.loss_history, torch.tensor([[0.0, 0.0], [2.0, 1.0]]))
    assert int(dwa.epoch_num_steps) == 0
    assert torch.equal(dwa.epoch_loss_sum, torch.zeros(2))


def test_dwa_records_nothing_in_eval_mode():
    dwa = DWA()
    _run_epochs(dwa, [[[2.0, 2.0]], [[1.0, 1.5]]])
    state = copy.deepcopy(dwa.state_dict())
    dwa.eval()
    value = dwa(torch.tensor([7.0, 9.0]))
    expected_weights = _expected_weights([2.0, 2.0], [1.0, 1.5], 2.0).float()
    torch.testing.assert_close(value, expected_weights @ torch.tensor([7.0, 9.0]))
    for name, tensor in dwa.state_dict().items():
        assert torch.equal(tensor, state[name])
    dwa.step()  # nothing recorded this epoch: nothing to close
    for name, tensor in dwa.state_dict().items():
        assert torch.equal(tensor, state[name])


def test_dwa_step_without_recorded_values_does_nothing_as_in_torchjd_0_18():
    dwa = DWA()
    dwa.step()
    assert int(dwa.num_epochs) == 0
    values = torch.tensor([5.0, 1.0], requires_grad=True)
    (gradient,) = torch.autograd.grad(dwa(values), values)
    assert torch.equal(gradient, torch.ones(2))


def test_dwa_weights_values_of_any_shape_elementwise():
    dwa = DWA()
    _run_epochs(dwa, [[[[2.0, 1.0], [4.0, 1.0]]], [[[1.0, 1.0], [1.0, 0.5]]]])
    expected = _expected_weights([2.0, 1.0, 4.0, 1.0], [1.0, 1.0, 1.0, 0.5], 2.0).float()
    torch.testing.assert_close(dwa.weights(torch.ones(2, 2)), expected.reshape(2, 2))


def test_dwa_state_dict_round_trips_into_a_fresh_instance():
    dwa = DWA(temperature=1.5)
    _run_epochs(dwa, [[[3.0, 2.0, 1.0]], [[2.0, 2.0, 0.5]], [[1.0, 1.9, 0.4]]])
    dwa(torch.tensor([0.9, 1.8, 0.3]))  # an epoch in progress is part of the state
    state = dwa.state_dict()
    assert state["loss_history"].shape == (2, 3)

    fresh = DWA(temperature=1.5)
    fresh.load_state_dict(state)
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, state[name])
    # Both continue identically.
    for scalarizer in (dwa, fresh):
        scalarizer(torch.tensor([0.7, 1.8, 0.3]))
        scalarizer.step()
    losses = torch.tensor([1.0, 2.0, 3.0])
    assert torch.equal(fresh(losses), dwa(losses))


def test_dwa_state_dict_of_float64_loads_into_a_fresh_instance_as_float64():
    dwa = DWA()
    _run_epochs(dwa, [[[3.0, 2.0]]], dtype=torch.float64)
    fresh = DWA()
    fresh.load_state_dict(dwa.state_dict())
    assert fresh.loss_history.dtype == torch.float64


def test_dwa_reset_forgets_everything():
    dwa = DWA()
    _run_epochs(dwa, [[[3.0, 2.0]], [[1.0, 2.0]], [[0.5, 2.0]]])
    dwa(torch.tensor([1.0, 1.0]))
    dwa.reset()
    fresh_state = DWA().state_dict()
    for name, tensor in dwa.state_dict().items():
        assert torch.equal(tensor, fresh_state[name])
    # After a reset, another number of tasks is accepted.
    losses = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (gradient,) = torch.autograd.grad(dwa(losses), losses)
    assert torch.equal(gradient, torch.ones(3))


def test_dwa_rejects_another_number_of_tasks():
    dwa = DWA()
    dwa(torch.ones(2))
    with raises(ValueError, match="`values`"):
        dwa(torch.ones(3))
    with raises(ValueError, match="`values`"):
        dwa(torch.ones(1, 2))
    with raises(ValueError, match="`epoch_values`"):
        dwa.step(torch.ones(3))


@mark.parametrize(["temperature", "error"], [(0.0, ValueError), (-2.0, ValueError), ("2", TypeError)])
def test_dwa_rejects_invalid_temperature(temperature, error: type[Exception]):
    with raises(error, match="`temperature`"):
        DWA(temperature=temperature)
