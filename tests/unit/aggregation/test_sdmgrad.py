import pytest
import torch
from torch.testing import assert_close
from unit.aggregation._stateful_checks import (
    assert_reset_restores_initial_behaviour,
    assert_state_dict_round_trip,
    simplex_projection_2d,
)

from torchjd.aggregation import SDMGrad, SDMGradWeighting


def test_first_two_calls_hand_computed():
    lmbda, beta, niter, momentum = 0.5, 0.2, 2, 0.5
    j1 = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    j2 = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    j3 = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.float64)
    aggregator = SDMGrad(lr=beta, momentum=momentum, n_iter=niter, lambda_=lmbda)
    cross = (j1 @ j2.T).tolist()
    w = [0.5, 0.5]
    for _ in range(2):
        velocity = [0.0, 0.0]  # restarted at each call
        for _ in range(niter):
            shifted = [w[0] + lmbda / 2, w[1] + lmbda / 2]
            grad = [
                cross[0][0] * shifted[0] + cross[0][1] * shifted[1],
                cross[1][0] * shifted[0] + cross[1][1] * shifted[1],
            ]
            velocity = [momentum * v + g for v, g in zip(velocity, grad)]
            w = simplex_projection_2d([w[0] - beta * velocity[0], w[1] - beta * velocity[1]])
        result = aggregator(torch.cat([j1, j2, j3]))
        mean_gradient = (j3[0] + j3[1]) / 2
        expected = (w[0] * j3[0] + w[1] * j3[1] + lmbda * mean_gradient) / (1 + lmbda)
        assert_close(result, expected)
        assert_close(aggregator.gramian_weighting.weighting.weights, torch.tensor(w, dtype=torch.float64))


def test_many_steps_reach_the_regularized_min_norm_solution():
    # Deterministic version: w minimizes ½‖Jᵀ(w + λ/m)‖² on the simplex; check its KKT conditions.
    torch.manual_seed(0)
    matrix = torch.randn(3, 5, dtype=torch.float64)
    lmbda = 0.3
    weighting = SDMGradWeighting(lr=0.02, momentum=0.0, n_iter=5000, lambda_=lmbda)
    weighting(matrix @ matrix.T)
    w = weighting.weights
    gradient = matrix @ matrix.T @ (w + lmbda / 3)
    support = w > 1e-9
    # On the support the gradient is constant, and not smaller anywhere else.
    assert_close(gradient[support], gradient[support][0].expand(int(support.sum())))
    assert (gradient[~support] >= gradient[support][0] - 1e-9).all()


def test_infinite_like_lmbda_tends_to_the_mean():
    matrix = torch.tensor([[1.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    result = SDMGrad(lambda_=1e9, num_estimates=1)(matrix)
    assert_close(result, matrix.mean(dim=0), rtol=1e-6, atol=1e-8)


def test_single_objective():
    assert_close(SDMGrad(num_estimates=1)(torch.tensor([[2.0, -1.0]])), torch.tensor([2.0, -1.0]))


def test_zero_matrix_gives_zeros():
    assert_close(SDMGrad()(torch.zeros(6, 4)), torch.zeros(4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept(dtype):
    aggregator = SDMGrad()
    result = aggregator(torch.ones(6, 3, dtype=dtype))
    assert result.dtype == dtype and aggregator.gramian_weighting.weighting.weights.dtype == dtype


def test_rows_not_divisible_by_the_number_of_estimates_raise():
    with pytest.raises(ValueError, match="divisible by 2"):
        SDMGrad(num_estimates=2)(torch.ones(3, 2))


def test_reset_restores_initial_behaviour():
    torch.manual_seed(0)
    inputs = [torch.randn(6, 5) for _ in range(3)]
    assert_reset_restores_initial_behaviour(lambda: SDMGrad(lr=0.1, n_iter=3), inputs)


def test_state_dict_round_trip():
    torch.manual_seed(0)
    inputs = [torch.randn(6, 5) for _ in range(4)]
    assert_state_dict_round_trip(lambda: SDMGrad(lr=0.1, n_iter=3), inputs[:2], inputs[2:])


def test_pref_vector_sets_the_target_and_hyperparameters_are_settable():
    matrix = torch.tensor([[1.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    aggregator = SDMGrad(lambda_=1e9, num_estimates=1)
    aggregator.pref_vector = torch.tensor([1.0, 0.0], dtype=torch.float64)
    assert_close(aggregator(matrix), matrix[0], rtol=1e-6, atol=1e-8)
    aggregator.lambda_ = 0.0
    assert aggregator.gramian_weighting.weighting.lambda_ == 0.0
    with pytest.raises(ValueError, match="momentum"):
        aggregator.momentum = 1.0
    with pytest.raises(ValueError, match="J_1 @ J_2.T"):
        SDMGradWeighting()(torch.ones(2, 3))


def test_representations():
    assert repr(SDMGrad()) == (
        "SDMGrad(lr=10.0, momentum=0.5, n_iter=20, lambda_=0.3, pref_vector=None, "
        "num_estimates=3)"
    )
    assert str(SDMGrad()) == "SDMGrad"
    assert str(SDMGradWeighting()) == "SDMGradWeighting"


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"lambda_": -0.1}, ValueError),
        ({"lr": 0.0}, ValueError),
        ({"n_iter": 0}, ValueError),
        ({"n_iter": 1.5}, TypeError),
        ({"num_estimates": 5}, ValueError),
        ({"lambda_": None}, TypeError),
        ({"pref_vector": torch.ones(2, 2)}, ValueError),
    ],
)
def test_invalid_parameters_raise(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        SDMGrad(**kwargs)
