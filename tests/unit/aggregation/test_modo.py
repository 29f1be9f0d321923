import pytest
import torch
from torch.testing import assert_close
from unit.aggregation._stateful_checks import (
    assert_reset_restores_initial_behaviour,
    assert_state_dict_round_trip,
    simplex_projection_2d,
)

from torchjd.aggregation import MoDo, MoDoWeighting


def test_first_two_steps_hand_computed():
    gamma, rho = 0.25, 0.5
    j1 = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    j2 = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    j3 = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.float64)
    aggregator = MoDo(gamma=gamma, rho=rho)
    cross = (j1 @ j2.T).tolist()  # [[2, 0], [2, 1]]

    lam = [0.5, 0.5]
    for _ in range(2):
        step = [
            cross[0][0] * lam[0] + cross[0][1] * lam[1] + rho * lam[0],
            cross[1][0] * lam[0] + cross[1][1] * lam[1] + rho * lam[1],
        ]
        lam = simplex_projection_2d([lam[0] - gamma * step[0], lam[1] - gamma * step[1]])
        result = aggregator(torch.cat([j1, j2, j3]))
        expected = lam[0] * j3[0] + lam[1] * j3[1]
        assert_close(result, expected)
        assert_close(aggregator.gramian_weighting.weighting.weights, torch.tensor(lam, dtype=torch.float64))
    # First step: λ = Π([0.5, 0.5] - 0.25 * [1.25, 1.75]) = Π([0.1875, 0.0625]) = [0.5625, 0.4375]


def test_first_step_value_of_the_weighting_of_the_cross_matrix():
    # As in torchjd 0.18, MoDoWeighting takes A = J_1 J_2ᵀ (not symmetric).
    j1 = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    j2 = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    weighting = MoDoWeighting(gamma=0.25, rho=0.5)
    assert_close(weighting(j1 @ j2.T), torch.tensor([0.5625, 0.4375]))
    with pytest.raises(ValueError, match="J_1 @ J_2.T"):
        MoDoWeighting()(torch.ones(2, 3))


def test_hyperparameters_are_settable_and_take_effect_on_the_next_call():
    j1 = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    j2 = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    aggregator = MoDo(gamma=0.1, rho=0.1, num_estimates=3)
    aggregator.gamma = 0.25
    aggregator.rho = 0.5
    assert aggregator.gramian_weighting.weighting.gamma == 0.25
    result = aggregator(torch.cat([j1, j2, torch.eye(2)]))
    assert_close(result, torch.tensor([0.5625, 0.4375]))
    with pytest.raises(ValueError, match="gamma"):
        aggregator.gamma = 0.0


def test_two_estimates_average_the_direction():
    j1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    j2 = torch.tensor([[3.0, 0.0], [0.0, 4.0]])
    lam = MoDoWeighting(gamma=0.1, rho=0.0)(j1 @ j2.T)
    assert_close(lam.sum(), torch.tensor(1.0))
    aggregator = MoDo(gamma=0.1, rho=0.0, num_estimates=2)
    assert_close(aggregator(torch.cat([j1, j2])), lam @ ((j1 + j2) / 2))


def test_weights_stay_on_the_simplex():
    torch.manual_seed(0)
    aggregator = MoDo(gamma=0.5, rho=0.1, num_estimates=1)
    for _ in range(5):
        aggregator(torch.randn(4, 6))
        weights = aggregator.gramian_weighting.weighting.weights
        assert (weights >= 0).all()
        assert_close(weights.sum(), torch.tensor(1.0))


def test_single_objective():
    aggregator = MoDo(num_estimates=1)
    assert_close(aggregator(torch.tensor([[2.0, -1.0]])), torch.tensor([2.0, -1.0]))


def test_zero_matrix_gives_zeros_and_uniform_weights():
    aggregator = MoDo()
    assert_close(aggregator(torch.zeros(6, 4)), torch.zeros(4))
    assert_close(aggregator.gramian_weighting.weighting.weights, torch.full((2,), 0.5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept(dtype):
    aggregator = MoDo()
    result = aggregator(torch.ones(6, 3, dtype=dtype))
    assert result.dtype == dtype and aggregator.gramian_weighting.weighting.weights.dtype == dtype


def test_rows_not_divisible_by_the_number_of_estimates_raise():
    with pytest.raises(ValueError, match="divisible by 3"):
        MoDo()(torch.ones(4, 2))


def test_reset_restores_initial_behaviour():
    torch.manual_seed(0)
    inputs = [torch.randn(6, 5) for _ in range(3)]
    assert_reset_restores_initial_behaviour(lambda: MoDo(gamma=0.3), inputs)


def test_state_dict_round_trip():
    torch.manual_seed(0)
    inputs = [torch.randn(6, 5) for _ in range(4)]
    assert_state_dict_round_trip(lambda: MoDo(gamma=0.3), inputs[:2], inputs[2:])


def test_representations():
    assert repr(MoDo()) == "MoDo(gamma=0.1, rho=0.1, num_estimates=3)"
    assert str(MoDo()) == "MoDo"
    assert str(MoDoWeighting()) == "MoDoWeighting"


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"gamma": 0.0}, ValueError),
        ({"gamma": -1.0}, ValueError),
        ({"rho": -0.1}, ValueError),
        ({"num_estimates": 0}, ValueError),
        ({"num_estimates": 4}, ValueError),
        ({"num_estimates": 2.0}, TypeError),
        ({"gamma": "big"}, TypeError),
    ],
)
def test_invalid_parameters_raise(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        MoDo(**kwargs)
