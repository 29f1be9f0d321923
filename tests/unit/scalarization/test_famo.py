import math

import torch
from pytest import mark, raises

from torchjd.scalarization import FAMO, Sum


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_famo_value_and_gradient_match_the_hand_formula(dtype: torch.dtype):
    famo = FAMO(3, min_losses=torch.tensor([0.0, 0.5, -1.0]), epsilon=1e-3)
    with torch.no_grad():
        famo.logits.copy_(torch.tensor([0.2, -0.4, 1.0]))
    losses = torch.tensor([2.0, 1.0, 0.5], dtype=dtype, requires_grad=True)
    value = famo(losses)
    z = torch.softmax(torch.tensor([0.2, -0.4, 1.0], dtype=dtype), dim=0)
    gaps = losses.detach() - torch.tensor([0.0, 0.5, -1.0], dtype=dtype) + 1e-3
    c = 1.0 / (z / gaps).sum()
    assert value.dtype == dtype
    torch.testing.assert_close(value, c * (z * torch.log(gaps)).sum())
    (gradient,) = torch.autograd.grad(value, losses)
    # The model's gradient is c sum_i z_i grad l_i / gap_i: a convex combination of the task
    # gradients divided by their losses, and the weights c z_i / gap_i sum to one.
    torch.testing.assert_close(gradient, c * z / gaps)
    torch.testing.assert_close(gradient.sum(), torch.tensor(1.0, dtype=dtype))
    assert famo.logits.grad is None


def _famo_adam_reference(
    loss_pairs: list[tuple[list[float], list[float]]], w_lr: float, gamma: float
) -> torch.Tensor:
    """The logits after FAMO updates, with torch.optim.Adam as the independent optimizer."""

    logits = torch.zeros(len(loss_pairs[0][0]), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=w_lr, weight_decay=gamma)
    for before, after in loss_pairs:
        delta = torch.log(torch.tensor(before, dtype=torch.float64)) - torch.log(
            torch.tensor(after, dtype=torch.float64)
        )
        optimizer.zero_grad()
        # The vector-Jacobian product of the softmax with δ, by autograd.
        (torch.softmax(logits, dim=0) @ delta).backward()
        optimizer.step()
    return logits.detach()


def test_famo_update_is_an_adam_step_on_the_softmax_vjp_of_the_log_loss_decrease():
    loss_pairs = [
        ([2.0, 1.0, 4.0], [1.0, 0.9, 3.0]),
        ([1.1, 0.9, 3.0], [1.0, 0.5, 2.9]),
        ([1.0, 0.5, 2.9], [0.95, 0.45, 2.0]),
    ]
    famo = FAMO(3, lr=0.1, weight_decay=0.01, epsilon=0.0).double()
    for before, after in loss_pairs:
        famo(torch.tensor(before, dtype=torch.float64))
        famo.update(torch.tensor(after, dtype=torch.float64))
    expected = _famo_adam_reference(loss_pairs, w_lr=0.1, gamma=0.01)
    torch.testing.assert_close(famo.logits.detach(), expected)
    assert int(famo.step) == 3


def test_famo_update_moves_weight_to_the_task_that_improved_less():
    famo = FAMO(2)
    famo(torch.tensor([2.0, 2.0]))
    famo.update(torch.tensor([1.0, 1.9]))
    weights = torch.softmax(famo.logits, dim=0)
    assert weights[1] > 0.5 > weights[0]
    # First Adam step: each logit moves by w_lr against the sign of its gradient.
    torch.testing.assert_close(famo.logits.detach(), torch.tensor([-0.025, 0.025]))


def test_famo_update_needs_a_call_before_each_update():
    famo = FAMO(2)
    with raises(RuntimeError, match="update"):
        famo.update(torch.ones(2))
    famo(torch.tensor([2.0, 2.0]))
    famo.update(torch.tensor([1.0, 1.0]))
    with raises(RuntimeError, match="update"):
        famo.update(torch.ones(2))


def test_famo_records_nothing_in_eval_mode():
    famo = FAMO(2)
    famo(torch.tensor([2.0, 2.0]))
    famo.eval()
    famo(torch.tensor([7.0, 7.0]))
    assert torch.equal(famo.previous_losses, torch.tensor([2.0, 2.0]))


def test_famo_decreases_all_losses_at_similar_rates_on_a_toy_problem():
    # Two conflicting quadratics on a shared parameter, with scales 100 apart and a floor of
    # 0.01. The sum is dominated by the large loss and mostly decreases that one; FAMO decreases
    # both log-losses by the same amount, ending at the midpoint of the Pareto set.
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])

    def compute_losses(theta: torch.Tensor) -> torch.Tensor:
        return torch.stack(
            [100.0 * ((theta - a).pow(2).sum() + 0.01), (theta - b).pow(2).sum() + 0.01]
        )

    def log_decreases(use_famo: bool) -> torch.Tensor:
        theta = torch.tensor([5.0, 5.0], requires_grad=True)
        initial = compute_losses(theta).detach()
        famo, total = FAMO(2), Sum()
        optimizer = torch.optim.SGD([theta], lr=0.02 if use_famo else 0.004)
        for _ in range(150):
            optimizer.zero_grad()
            losses = compute_losses(theta)
            (famo(losses) if use_famo else total(losses)).backward()
            optimizer.step()
            if use_famo:
                with torch.no_grad():
                    famo.update(compute_losses(theta))
        return torch.log(initial) - torch.log(compute_losses(theta).detach())

    famo_decreases = log_decreases(use_famo=True)
    sum_decreases = log_decreases(use_famo=False)
    assert torch.all(famo_decreases > 4.0)
    assert math.isclose(famo_decreases[0], famo_decreases[1], rel_tol=0.02)
    assert sum_decreases[0] > 2 * sum_decreases[1]


def test_famo_state_dict_round_trips_into_a_fresh_instance():
    famo = FAMO(2, lr=0.05)
    for before, after in [([2.0, 1.0], [1.5, 0.95]), ([1.5, 0.95], [1.2, 0.9])]:
        famo(torch.tensor(before))
        famo.update(torch.tensor(after))
    famo(torch.tensor([1.2, 0.9]))  # a pending update is part of the state
    state = famo.state_dict()
    assert set(state) == {
        "logits",
        "previous_losses",
        "has_previous_losses",
        "step",
        "exp_avg",
        "exp_avg_sq",
    }
    fresh = FAMO(2, lr=0.05)
    fresh.load_state_dict(state)
    for scalarizer in (famo, fresh):
        scalarizer.update(torch.tensor([1.0, 0.85]))
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, famo.state_dict()[name])
    losses = torch.tensor([1.0, 0.8])
    assert torch.equal(fresh(losses), famo(losses))


def test_famo_reset_forgets_everything_but_the_hyper_parameters():
    famo = FAMO(2, min_losses=torch.tensor([0.1, 0.2]))
    famo(torch.tensor([2.0, 1.0]))
    famo.update(torch.tensor([1.0, 0.9]))
    famo(torch.tensor([1.0, 0.9]))
    famo.reset()
    fresh = FAMO(2, min_losses=torch.tensor([0.1, 0.2]))
    for name, tensor in famo.state_dict().items():
        assert torch.equal(tensor, fresh.state_dict()[name])


def test_famo_logits_are_a_parameter_that_backpropagation_does_not_touch():
    famo = FAMO(3)
    assert [name for name, _ in famo.named_parameters()] == ["logits"]
    losses = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    famo(losses).backward()
    assert famo.logits.grad is None


def test_famo_rejects_losses_below_their_lower_bound():
    famo = FAMO(2, min_losses=torch.tensor([1.0, 0.0]))
    with raises(ValueError, match="`values`"):
        famo(torch.tensor([0.5, 1.0]))
    famo(torch.tensor([2.0, 1.0]))
    with raises(ValueError, match="`values`"):
        famo.update(torch.tensor([0.5, 1.0]))


def test_famo_rejects_new_losses_of_another_shape():
    famo = FAMO(2)
    famo(torch.ones(2))
    with raises(ValueError, match="`values`"):
        famo.update(torch.ones(3))
    with raises(ValueError, match="`values`"):
        famo(torch.ones(3))


@mark.parametrize(
    ["kwargs", "error", "name"],
    [
        ({"shape": 0}, ValueError, "shape"),
        ({"shape": 2.0}, TypeError, "shape"),
        ({"lr": 0.0}, ValueError, "lr"),
        ({"lr": "0.1"}, TypeError, "lr"),
        ({"weight_decay": -1e-3}, ValueError, "weight_decay"),
        ({"epsilon": -1.0}, ValueError, "epsilon"),
        ({"min_losses": torch.zeros(3)}, ValueError, "min_losses"),
        ({"min_losses": torch.tensor([0.0, float("nan")])}, ValueError, "min_losses"),
    ],
)
def test_famo_rejects_invalid_parameters(kwargs: dict, error: type[Exception], name: str):
    with raises(error, match=f"`{name}`"):
        FAMO(**({"shape": 2} | kwargs))
