import math

import pytest
import torch
from torch.testing import assert_close
from unit.aggregation._stateful_checks import (
    assert_reset_restores_initial_behaviour,
    assert_state_dict_round_trip,
)

from torchjd.aggregation import ExcessMTL, ExcessMTLWeighting


def _risks(sums: list[list[float]], matrix: list[list[float]]) -> list[float]:
    return [
        sum(g**2 / math.sqrt(s + 1e-7) for g, s in zip(row, sum_row))
        for row, sum_row in zip(matrix, sums)
    ]


def _normalized(weights: list[float]) -> list[float]:
    return [w / sum(weights) for w in weights]


def test_first_three_steps_hand_computed_without_warmup():
    # As in torchjd 0.18 and the authors' code: the first call's risks are the baseline, and the
    # first update uses them unnormalized.
    eta = 0.5
    j1 = [[1.0, 2.0], [0.0, 3.0]]
    j2 = [[2.0, 0.0], [1.0, 1.0]]
    j3 = [[1.0, 1.0], [0.0, 2.0]]
    aggregator = ExcessMTL(robust_step_size=eta)
    r1 = _risks([[1, 4], [0, 9]], j1)
    w = _normalized([0.5 * math.exp(eta * r) for r in r1])
    j = torch.tensor(j1, dtype=torch.float64)
    assert_close(aggregator(j), w[0] * j[0] + w[1] * j[1])

    r2 = _risks([[5, 4], [1, 10]], j2)
    w = _normalized([wi * math.exp(eta * r / (b + 1e-7)) for wi, r, b in zip(w, r2, r1)])
    j = torch.tensor(j2, dtype=torch.float64)
    assert_close(aggregator(j), w[0] * j[0] + w[1] * j[1])

    r3 = _risks([[6, 5], [1, 14]], j3)
    w = _normalized([wi * math.exp(eta * r / (b + 1e-7)) for wi, r, b in zip(w, r3, r1)])
    j = torch.tensor(j3, dtype=torch.float64)
    assert_close(aggregator(j), w[0] * j[0] + w[1] * j[1])
    assert_close(aggregator.weighting.weights, torch.tensor(w, dtype=torch.float64))


def test_warmup_keeps_uniform_weights_and_averages_the_baseline():
    eta = 1.0
    j1 = [[1.0, 2.0], [0.0, 3.0]]
    j2 = [[2.0, 0.0], [1.0, 1.0]]
    j3 = [[1.0, 1.0], [0.0, 2.0]]
    weighting = ExcessMTLWeighting(robust_step_size=eta, n_warmup_steps=2)
    half = torch.full((2,), 0.5, dtype=torch.float64)
    assert_close(weighting(torch.tensor(j1, dtype=torch.float64)), half)
    assert_close(weighting(torch.tensor(j2, dtype=torch.float64)), half)
    r1, r2 = _risks([[1, 4], [0, 9]], j1), _risks([[5, 4], [1, 10]], j2)
    baseline = [(a + b) / 2 for a, b in zip(r1, r2)]
    r3 = _risks([[6, 5], [1, 14]], j3)
    w = _normalized([0.5 * math.exp(eta * r / (b + 1e-7)) for r, b in zip(r3, baseline)])
    result = weighting(torch.tensor(j3, dtype=torch.float64))
    assert_close(result, torch.tensor(w, dtype=torch.float64))


def test_hyperparameters_take_effect_on_the_next_call():
    weighting = ExcessMTLWeighting(n_warmup_steps=5)
    weighting(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    weighting.n_warmup_steps = 1  # the warmup is over from the next call on
    weighting.robust_step_size = 2.0
    weights = weighting(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    # baseline [1, 2] (the one warmup call), risks [1 / sqrt(2), 0]
    expected = _normalized([math.exp(2.0 * (1 / math.sqrt(2 + 1e-7)) / (1 + 1e-7)), 1.0])
    assert_close(weights, torch.tensor(expected), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="n_warmup_steps"):
        weighting.n_warmup_steps = -1


def test_weights_stay_on_the_simplex_and_huge_risks_do_not_overflow():
    torch.manual_seed(0)
    weighting = ExcessMTLWeighting(robust_step_size=0.3)
    for _ in range(4):
        weights = weighting(torch.randn(3, 5))
        assert_close(weights.sum(), torch.tensor(1.0))
        assert (weights > 0).all()
    weights = ExcessMTLWeighting()(torch.tensor([[1e30, 0.0], [0.0, 1.0]], dtype=torch.float64))
    assert torch.isfinite(weights).all()
    assert_close(weights, torch.tensor([1.0, 0.0], dtype=torch.float64))


def test_single_objective():
    aggregator = ExcessMTL()
    for _ in range(2):
        assert_close(aggregator(torch.tensor([[2.0, -1.0]])), torch.tensor([2.0, -1.0]))


def test_zero_matrix_gives_zeros_and_finite_state():
    aggregator = ExcessMTL()
    for _ in range(2):
        assert_close(aggregator(torch.zeros(3, 4)), torch.zeros(4))
    assert torch.isfinite(aggregator.weighting.weights).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept(dtype):
    aggregator = ExcessMTL()
    aggregator(torch.ones(2, 3, dtype=dtype))
    result = aggregator(torch.ones(2, 3, dtype=dtype))
    assert result.dtype == dtype and aggregator.weighting.squared_gradient_sums.dtype == dtype


def test_changing_the_shape_raises():
    aggregator = ExcessMTL()
    aggregator(torch.ones(2, 3))
    with pytest.raises(ValueError, match="reset"):
        aggregator(torch.ones(2, 4))


def test_reset_restores_initial_behaviour():
    torch.manual_seed(0)
    inputs = [torch.randn(3, 5) for _ in range(3)]
    assert_reset_restores_initial_behaviour(lambda: ExcessMTL(robust_step_size=0.5), inputs)


def test_state_dict_round_trip():
    torch.manual_seed(0)
    inputs = [torch.randn(3, 5) for _ in range(4)]
    assert_state_dict_round_trip(lambda: ExcessMTL(robust_step_size=0.5), inputs[:2], inputs[2:])


def test_representations():
    assert repr(ExcessMTL()) == "ExcessMTL(robust_step_size=1.0, n_warmup_steps=0)"
    assert str(ExcessMTL()) == "ExcessMTL"
    assert str(ExcessMTLWeighting()) == "ExcessMTLWeighting"


@pytest.mark.parametrize("value,error", [(0.0, ValueError), (-1.0, ValueError), ("1", TypeError)])
def test_invalid_step_size_raises(value, error):
    with pytest.raises(error, match="robust_step_size"):
        ExcessMTL(robust_step_size=value)
