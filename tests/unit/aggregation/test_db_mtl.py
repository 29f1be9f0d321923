import pytest
import torch
from torch.testing import assert_close
from unit.aggregation._stateful_checks import (
    assert_reset_restores_initial_behaviour,
    assert_state_dict_round_trip,
)

from torchjd.aggregation import DBMTL


def test_first_two_steps_hand_computed():
    aggregator = DBMTL(beta=0.9, beta_sigma=0.5)
    j1 = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=torch.float64)
    j2 = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)

    # t = 1: β_1 = 0.9, ĝ = 0.1 J1 = [[0.3, 0.4], [0, 0.1]]; norms 0.5 and 0.1.
    g_hat = 0.1 * j1
    expected = 1.0 * g_hat[0] + 5.0 * g_hat[1]
    assert_close(aggregator(j1), expected)

    # t = 2: β_2 = 0.9 / sqrt(2).
    rate = 0.9 / 2**0.5
    g_hat = rate * g_hat + (1 - rate) * j2
    norms = [g_hat[0].norm().item(), g_hat[1].norm().item()]
    top = max(norms)
    expected = top / norms[0] * g_hat[0] + top / norms[1] * g_hat[1]
    assert_close(aggregator(j2), expected)
    assert_close(aggregator.averaged_jacobian, g_hat)
    assert aggregator.step.item() == 2


def test_all_rescaled_gradients_have_the_largest_norm():
    torch.manual_seed(0)
    matrix = torch.randn(4, 6, dtype=torch.float64) * torch.tensor([[1.0], [10.0], [0.1], [3.0]])
    result = DBMTL(beta=0.0)(matrix)
    norms = matrix.norm(dim=1)
    expected = (matrix / norms[:, None]).sum(dim=0) * norms.max()
    assert_close(result, expected)


def test_single_objective():
    assert_close(DBMTL(beta=0.0)(torch.tensor([[2.0, -1.0]])), torch.tensor([2.0, -1.0]))


def test_zero_rows_contribute_nothing():
    matrix = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    assert_close(DBMTL(beta=0.0)(matrix), torch.tensor([1.0, 2.0]))
    assert_close(DBMTL()(torch.zeros(3, 4)), torch.zeros(4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept(dtype):
    aggregator = DBMTL()
    result = aggregator(torch.ones(2, 3, dtype=dtype))
    assert result.dtype == dtype and aggregator.averaged_jacobian.dtype == dtype


def test_changing_the_shape_raises():
    aggregator = DBMTL()
    aggregator(torch.ones(2, 3))
    with pytest.raises(ValueError, match="reset"):
        aggregator(torch.ones(3, 3))


def test_reset_restores_initial_behaviour():
    torch.manual_seed(0)
    inputs = [torch.randn(3, 5) for _ in range(3)]
    assert_reset_restores_initial_behaviour(lambda: DBMTL(), inputs)


def test_state_dict_round_trip():
    torch.manual_seed(0)
    inputs = [torch.randn(3, 5) for _ in range(4)]
    assert_state_dict_round_trip(lambda: DBMTL(), inputs[:2], inputs[2:])


def test_representations():
    assert repr(DBMTL()) == "DBMTL(beta=0.9, beta_sigma=0.5)"
    assert str(DBMTL()) == "DBMTL"


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"beta": 1.0}, ValueError),
        ({"beta": -0.1}, ValueError),
        ({"beta_sigma": -1.0}, ValueError),
        ({"beta_sigma": [0.5]}, TypeError),
    ],
)
def test_invalid_parameters_raise(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        DBMTL(**kwargs)


def test_overflowing_step_returns_non_finite_and_keeps_the_state():
    aggregator = DBMTL()
    matrix = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    aggregator(matrix)
    averaged, step = aggregator.averaged_jacobian.clone(), aggregator.step.clone()
    # Finite, but the rescaled sum of the averages exceeds float32.
    assert not torch.isfinite(aggregator(torch.tensor([[3e38, 0.0], [0.0, 1e-30]]))).all()
    assert torch.equal(aggregator.averaged_jacobian, averaged)
    assert torch.equal(aggregator.step, step)
