import math

import pytest
import torch
from torch.testing import assert_close

from torchjd.aggregation import GradNorm


def _sign(x):
    return (x > 0) - (x < 0)


def test_first_two_steps_hand_computed():
    alpha, lr = 1.5, 0.05
    j1 = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=torch.float64)  # norms 5 and 1
    j2 = torch.tensor([[0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)  # norms 2 and √2
    aggregator = GradNorm(alpha=alpha, lr=lr)

    # Step 1: weights 1; losses equal to the initial ones, so r = 1 and the target is Ḡ = 3.
    aggregator.set_losses(torch.tensor([2.0, 4.0]))
    assert_close(aggregator(j1), j1.sum(dim=0))
    w = [1 - lr * _sign(5 - 3) * 5, 1 - lr * _sign(1 - 3) * 1]  # [0.75, 1.05]
    w = [2 * x / sum(w) for x in w]
    assert_close(aggregator.loss_weights, torch.tensor(w, dtype=torch.float64))

    # Step 2: losses [1, 3]: rates 0.5 and 0.75, relative rates 0.8 and 1.2.
    aggregator.set_losses(torch.tensor([1.0, 3.0]))
    assert_close(aggregator(j2), w[0] * j2[0] + w[1] * j2[1])
    g = [w[0] * 2.0, w[1] * math.sqrt(2.0)]
    mean_g = (g[0] + g[1]) / 2
    targets = [mean_g * 0.8**alpha, mean_g * 1.2**alpha]
    w = [
        max(w[0] - lr * _sign(g[0] - targets[0]) * 2.0, 0.0),
        max(w[1] - lr * _sign(g[1] - targets[1]) * math.sqrt(2.0), 0.0),
    ]
    w = [2 * x / sum(w) for x in w]
    assert_close(aggregator.loss_weights, torch.tensor(w, dtype=torch.float64))
    assert_close(aggregator.initial_losses, torch.tensor([2.0, 4.0]))


def test_without_losses_raises():
    aggregator = GradNorm()
    with pytest.raises(RuntimeError, match="set_losses"):
        aggregator(torch.ones(2, 3))
    aggregator.set_losses(torch.ones(2))
    aggregator(torch.ones(2, 3))
    with pytest.raises(RuntimeError, match="set_losses"):
        aggregator(torch.ones(2, 3))


def test_mismatched_losses_raise():
    aggregator = GradNorm()
    aggregator.set_losses(torch.ones(3))
    with pytest.raises(ValueError, match="3 values"):
        aggregator(torch.ones(2, 3))
    with pytest.raises(ValueError, match="losses"):
        aggregator.set_losses(torch.ones(2, 2))
    with pytest.raises(TypeError, match="losses"):
        aggregator.set_losses([1.0, 2.0])


def test_single_objective():
    aggregator = GradNorm()
    for loss in (2.0, 1.0):
        aggregator.set_losses(torch.tensor([loss]))
        assert_close(aggregator(torch.tensor([[2.0, -1.0]])), torch.tensor([2.0, -1.0]))
    assert_close(aggregator.loss_weights, torch.ones(1))


def test_zero_matrix_and_zero_losses_stay_finite():
    aggregator = GradNorm()
    for _ in range(2):
        aggregator.set_losses(torch.zeros(3))
        assert_close(aggregator(torch.zeros(3, 4)), torch.zeros(4))
    assert_close(aggregator.loss_weights, torch.ones(3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept(dtype):
    aggregator = GradNorm()
    aggregator.set_losses(torch.ones(2, dtype=dtype))
    result = aggregator(torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=dtype))
    assert result.dtype == dtype and aggregator.loss_weights.dtype == dtype


def test_aggregation_is_differentiable_in_the_matrix():
    matrix = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    aggregator = GradNorm()
    aggregator.set_losses(torch.ones(2))
    aggregator(matrix).sum().backward()
    assert_close(matrix.grad, torch.ones(2, 2))


def _run(aggregator, steps):
    outputs = []
    for losses, matrix in steps:
        aggregator.set_losses(losses)
        outputs.append(aggregator(matrix))
    return outputs


def _steps(seed, count):
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.rand(3, generator=generator) + 0.1, torch.randn(3, 4, generator=generator))
        for _ in range(count)
    ]


def test_reset_restores_initial_behaviour():
    steps = _steps(0, 3)
    aggregator = GradNorm(lr=0.3)
    first = _run(aggregator, steps)
    aggregator.reset()
    for expected, actual in zip(first, _run(aggregator, steps)):
        assert_close(actual, expected, rtol=0, atol=0)


def test_state_dict_round_trip():
    import copy

    aggregator = GradNorm(lr=0.3)
    _run(aggregator, _steps(0, 2))
    fresh = GradNorm(lr=0.3)
    fresh.load_state_dict(aggregator.state_dict())
    copied = copy.deepcopy(aggregator)
    after = _steps(1, 2)
    expected = _run(aggregator, after)
    for other in (fresh, copied):
        for e, actual in zip(expected, _run(other, after)):
            assert_close(actual, e, rtol=0, atol=0)


def test_representations():
    assert repr(GradNorm()) == "GradNorm(alpha=1.5, lr=0.025)"
    assert str(GradNorm()) == "GradNorm"


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"alpha": -0.1}, ValueError),
        ({"lr": 0.0}, ValueError),
        ({"lr": "0.1"}, TypeError),
        ({"alpha": None}, TypeError),
    ],
)
def test_invalid_parameters_raise(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        GradNorm(**kwargs)


def test_non_finite_losses_or_overflow_skip_the_step_and_keep_the_state():
    aggregator = GradNorm()
    matrix = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    aggregator.set_losses(torch.tensor([1.0, 2.0]))
    aggregator(matrix)
    weights, initial = aggregator.loss_weights.clone(), aggregator.initial_losses.clone()
    aggregator.set_losses(torch.tensor([float("inf"), 2.0]))
    assert torch.isnan(aggregator(matrix)).all()
    aggregator.set_losses(torch.tensor([1.0, 2.0]))
    # Finite entries whose row norm (about 4.2e38) overflows float32.
    assert torch.isnan(aggregator(torch.tensor([[3e38, 3e38], [1.0, 0.0]]))).all()
    assert torch.equal(aggregator.loss_weights, weights)
    assert torch.equal(aggregator.initial_losses, initial)


def test_non_finite_first_losses_are_not_the_initial_ones():
    aggregator = GradNorm()
    aggregator.set_losses(torch.tensor([float("nan"), 2.0]))
    assert torch.isnan(aggregator(torch.eye(2))).all()
    aggregator.set_losses(torch.tensor([3.0, 2.0]))
    assert torch.isfinite(aggregator(torch.eye(2))).all()
    assert torch.equal(aggregator.initial_losses, torch.tensor([3.0, 2.0]))
