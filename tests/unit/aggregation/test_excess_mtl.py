import math

import pytest
import torch
from torch.testing import assert_close
from unit.aggregation._stateful_checks import (
    assert_reset_restores_initial_behaviour,
    assert_state_dict_round_trip,
)

from torchjd.aggregation import ExcessMTL, ExcessMTLWeighting


def test_first_three_steps_hand_computed():
    eta = 0.5
    j1 = torch.tensor([[1.0, 2.0], [0.0, 3.0]], dtype=torch.float64)
    j2 = torch.tensor([[2.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    j3 = torch.tensor([[1.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    aggregator = ExcessMTL(robust_step_size=eta)

    # Step 1: weights stay at 1, the initial risks are recorded.
    assert_close(aggregator(j1), j1.sum(dim=0))
    r1 = [1 / math.sqrt(1 + 1e-7) + 4 / math.sqrt(4 + 1e-7), 9 / math.sqrt(9 + 1e-7)]
    assert_close(aggregator.weighting.initial_risks, torch.tensor(r1, dtype=torch.float64))

    # Step 2: sums = [[5, 4], [1, 10]].
    r2 = [4 / math.sqrt(5 + 1e-7), 1 / math.sqrt(1 + 1e-7) + 1 / math.sqrt(10 + 1e-7)]
    w = [math.exp(eta * r2[0] / r1[0]), math.exp(eta * r2[1] / r1[1])]
    w = [2 * x / sum(w) for x in w]
    assert_close(aggregator(j2), w[0] * j2[0] + w[1] * j2[1])

    # Step 3: sums = [[6, 5], [1, 14]].
    r3 = [1 / math.sqrt(6 + 1e-7) + 1 / math.sqrt(5 + 1e-7), 4 / math.sqrt(14 + 1e-7)]
    w = [w[0] * math.exp(eta * r3[0] / r1[0]), w[1] * math.exp(eta * r3[1] / r1[1])]
    w = [2 * x / sum(w) for x in w]
    assert_close(aggregator(j3), w[0] * j3[0] + w[1] * j3[1])
    assert_close(aggregator.weighting.weights, torch.tensor(w, dtype=torch.float64))


def test_weights_sum_to_the_number_of_objectives():
    torch.manual_seed(0)
    weighting = ExcessMTLWeighting(robust_step_size=0.3)
    for _ in range(4):
        weights = weighting(torch.randn(3, 5))
        assert_close(weights.sum(), torch.tensor(3.0))
        assert (weights > 0).all()


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
    assert repr(ExcessMTL()) == "ExcessMTL(robust_step_size=0.01)"
    assert str(ExcessMTL()) == "ExcessMTL"
    assert str(ExcessMTLWeighting()) == "ExcessMTLWeighting"


@pytest.mark.parametrize("value,error", [(0.0, ValueError), (-1.0, ValueError), ("1", TypeError)])
def test_invalid_step_size_raises(value, error):
    with pytest.raises(error, match="robust_step_size"):
        ExcessMTL(robust_step_size=value)
