import pytest
import torch
from torch.testing import assert_close
from unit.aggregation._stateful_checks import (
    assert_reset_restores_initial_behaviour,
    assert_state_dict_round_trip,
    simplex_projection_2d,
)

from torchjd.aggregation import MoCo


def test_first_two_steps_hand_computed():
    beta, gamma, rho = 0.5, 0.1, 0.2
    j1 = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]], dtype=torch.float64)
    j2 = torch.tensor([[3.0, 0.0, 1.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    aggregator = MoCo(beta=beta, gamma=gamma, rho=rho)

    y = torch.zeros(2, 3, dtype=torch.float64)
    lam = [0.5, 0.5]
    for matrix in (j1, j2):
        y = (1 - beta) * y + beta * matrix
        gram = (y @ y.T).tolist()
        step = [
            gram[0][0] * lam[0] + gram[0][1] * lam[1] + rho * lam[0],
            gram[1][0] * lam[0] + gram[1][1] * lam[1] + rho * lam[1],
        ]
        lam = simplex_projection_2d([lam[0] - gamma * step[0], lam[1] - gamma * step[1]])
        result = aggregator(matrix)
        assert_close(result, lam[0] * y[0] + lam[1] * y[1])
        assert_close(aggregator.tracked_jacobian, y)
        assert_close(aggregator.weights, torch.tensor(lam, dtype=torch.float64))


def test_constant_jacobian_is_tracked_geometrically():
    matrix = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    aggregator = MoCo(beta=0.5)
    for t in range(1, 5):
        aggregator(matrix)
        assert_close(aggregator.tracked_jacobian, (1 - 0.5**t) * matrix)


def test_single_objective():
    aggregator = MoCo(beta=1.0)
    assert_close(aggregator(torch.tensor([[2.0, -1.0]])), torch.tensor([2.0, -1.0]))


def test_zero_matrix_gives_zeros():
    aggregator = MoCo()
    assert_close(aggregator(torch.zeros(3, 4)), torch.zeros(4))
    assert_close(aggregator.weights, torch.full((3,), 1 / 3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept(dtype):
    aggregator = MoCo()
    result = aggregator(torch.ones(2, 3, dtype=dtype))
    assert result.dtype == dtype and aggregator.tracked_jacobian.dtype == dtype


def test_changing_the_shape_raises():
    aggregator = MoCo()
    aggregator(torch.ones(2, 3))
    with pytest.raises(ValueError, match="reset"):
        aggregator(torch.ones(2, 4))
    with pytest.raises(ValueError, match="reset"):
        aggregator(torch.ones(3, 3))


def test_reset_restores_initial_behaviour():
    torch.manual_seed(0)
    inputs = [torch.randn(3, 5) for _ in range(3)]
    assert_reset_restores_initial_behaviour(lambda: MoCo(), inputs)


def test_state_dict_round_trip():
    torch.manual_seed(0)
    inputs = [torch.randn(3, 5) for _ in range(4)]
    assert_state_dict_round_trip(lambda: MoCo(), inputs[:2], inputs[2:])


def test_representations():
    assert repr(MoCo()) == "MoCo(beta=0.5, gamma=0.1, rho=0.0)"
    assert str(MoCo()) == "MoCo"


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"beta": 0.0}, ValueError),
        ({"beta": 1.1}, ValueError),
        ({"gamma": 0.0}, ValueError),
        ({"rho": -1.0}, ValueError),
        ({"rho": "0"}, TypeError),
    ],
)
def test_invalid_parameters_raise(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        MoCo(**kwargs)


def test_overflowing_step_returns_nan_and_keeps_the_state():
    aggregator = MoCo()
    matrix = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    aggregator(matrix)
    tracked, weights = aggregator.tracked_jacobian.clone(), aggregator.weights.clone()
    # Finite, but Y Yᵀ λ overflows float32.
    assert torch.isnan(aggregator(matrix * 1e20)).all()
    assert torch.equal(aggregator.tracked_jacobian, tracked)
    assert torch.equal(aggregator.weights, weights)
