import pytest
import torch
from torch.testing import assert_close
from unit.aggregation._stateful_checks import (
    assert_reset_restores_initial_behaviour,
    assert_state_dict_round_trip,
)

from torchjd.aggregation import PCD, PCDWeighting


def test_two_objectives_match_the_closed_form():
    tau = 0.3
    g1 = torch.tensor([2.0, 0.0, 1.0], dtype=torch.float64)
    g2 = torch.tensor([-1.0, 3.0, 0.0], dtype=torch.float64)
    # First call: normalization by the current norms.
    n1, n2 = g1 / g1.norm(), g2 / g2.norm()
    mu = tau - (n2 @ n1) / (n2 @ n2)
    direction = n1 + mu * n2 if mu > 0 else n1
    expected = g1.norm() * direction / direction.norm()  # rescaled to the norm of g_1
    assert_close(PCD(tau=tau)(torch.stack([g1, g2])), expected)


def test_inactive_constraint_returns_the_primary_gradient():
    matrix = torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    assert_close(PCD(tau=0.5)(matrix), matrix[0])


@pytest.mark.parametrize("tau", [0.0, 0.4, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_direction_satisfies_the_kkt_conditions(tau, seed):
    torch.manual_seed(seed)
    matrix = torch.randn(5, 8, dtype=torch.float64)
    weighting = PCDWeighting(tau=tau, eps=0.0)
    weights = weighting(matrix @ matrix.T)
    norms = matrix.norm(dim=1)
    normalized = matrix / norms[:, None]
    # weights = c [1, μ] s with s_i = 1 / ||g_i|| (first call) and c > 0 the rescaling to ||g_1||.
    c = weights[0] * norms[0]
    d = (weights @ matrix) / c  # the normalized direction d̃
    multipliers = weights[1:] * norms[1:] / c
    slack = normalized[1:] @ d - tau * (normalized[1:] ** 2).sum(dim=1)
    assert_close((weights @ matrix).norm(), norms[0])
    assert (multipliers >= -1e-12).all()
    assert (slack >= -1e-9).all()
    assert_close(multipliers * slack, torch.zeros(4, dtype=torch.float64), atol=1e-9, rtol=0)
    # Stationarity is d̃ = g̃_1 + Σ μ_j g̃_j, which is how d was built from the weights.
    assert_close(d, normalized[0] + multipliers @ normalized[1:])


def test_uses_the_moving_average_of_squared_norms():
    beta = 0.5
    first = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    second = torch.tensor([[3.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    aggregator = PCD(tau=0.5, beta=beta, eps=0.0)
    aggregator(first)
    result = aggregator(second)
    # The moving average starts at 0 and is bias-corrected, as in torchjd 0.18.
    average = beta * (1 - beta) * torch.tensor([1.0, 1.0], dtype=torch.float64) + (
        1 - beta
    ) * torch.tensor([9.0, 2.0], dtype=torch.float64)
    assert_close(aggregator.gramian_weighting.squared_norms, average)
    s = (average / (1 - beta**2)).sqrt()
    n1, n2 = second[0] / s[0], second[1] / s[1]
    mu = 0.5 * (n2 @ n2) / (n2 @ n2) - (n2 @ n1) / (n2 @ n2)
    direction = n1 + mu * n2
    assert_close(result, second[0].norm() * direction / direction.norm())


def test_result_is_invariant_to_the_scale_of_secondary_objectives():
    torch.manual_seed(0)
    matrix = torch.randn(3, 4, dtype=torch.float64)
    scaled = matrix * torch.tensor([[1.0], [100.0], [0.01]], dtype=torch.float64)
    assert_close(PCD()(matrix), PCD()(scaled))


def test_single_objective():
    assert_close(PCD()(torch.tensor([[2.0, -1.0]])), torch.tensor([2.0, -1.0]))


def test_zero_matrix_gives_zeros():
    assert_close(PCD()(torch.zeros(3, 4)), torch.zeros(4))


def test_contradictory_constraints_are_dropped():
    # g_2 and g_3 are opposite: no direction makes progress on both; the output is g_1.
    matrix = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert_close(PCD()(matrix), matrix[0])


def test_tau_vector_and_settable_hyperparameters():
    g1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    g2 = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    matrix = torch.stack([g1, g2])
    aggregator = PCD(tau=torch.tensor([0.0]), beta=0.0, eps=0.0)
    # τ = 0: d̃ = g̃_1 + μ g̃_2 with g̃_2 · d̃ = 0 (orthogonal to g_2), rescaled to ||g_1||.
    result = aggregator(matrix)
    assert_close(result @ g2, torch.tensor(0.0, dtype=torch.float64), atol=1e-12, rtol=0)
    assert_close(result.norm(), torch.tensor(1.0, dtype=torch.float64))
    aggregator.tau = 1.0  # takes effect on the next call: g̃_2 · d̃ = ||g̃_2||² = 1
    n1, n2 = g1, g2 / g2.norm()
    direction = n1 + (1.0 - n2 @ n1) * n2
    assert_close(aggregator(matrix), direction / direction.norm())
    with pytest.raises(ValueError, match="tau"):
        aggregator.tau = torch.tensor([0.5, 2.0])
    with pytest.raises(ValueError, match="tau"):
        PCD(tau=torch.tensor([0.1, 0.2]))(matrix)  # one value per secondary objective


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept(dtype):
    torch.manual_seed(0)
    aggregator = PCD()
    result = aggregator(torch.randn(3, 4, dtype=dtype))
    assert result.dtype == dtype and aggregator.gramian_weighting.squared_norms.dtype == dtype


def test_reset_restores_initial_behaviour():
    torch.manual_seed(0)
    inputs = [torch.randn(3, 5) for _ in range(3)]
    assert_reset_restores_initial_behaviour(lambda: PCD(beta=0.5), inputs)


def test_state_dict_round_trip():
    torch.manual_seed(0)
    inputs = [torch.randn(3, 5) for _ in range(4)]
    assert_state_dict_round_trip(lambda: PCD(beta=0.5), inputs[:2], inputs[2:])


def test_representations():
    assert repr(PCD()) == "PCD(tau=0.02, beta=0.999, eps=1e-08)"
    assert str(PCD()) == "PCD"
    assert str(PCDWeighting()) == "PCDWeighting"


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"tau": -0.1}, ValueError),
        ({"tau": 1.5}, ValueError),
        ({"beta": 1.0}, ValueError),
        ({"tau": "0.5"}, TypeError),
    ],
)
def test_invalid_parameters_raise(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        PCD(**kwargs)
