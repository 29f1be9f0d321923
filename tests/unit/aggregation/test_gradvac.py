import math

import pytest
import torch
from torch.testing import assert_close
from unit.aggregation._stateful_checks import (
    assert_reset_restores_initial_behaviour,
    assert_state_dict_round_trip,
)

from torchjd.aggregation import GradVac, GradVacWeighting


def _cos(a, b):
    return (a @ b / (a.norm() * b.norm())).item()


def _vaccinate(g_i, g_j, target):
    """The paper's correction of g_i towards cos(g_i, g_j) = target, written plainly."""
    phi = _cos(g_i, g_j)
    if phi >= target:
        return g_i
    coef = (
        g_i.norm()
        * (target * math.sqrt(1 - phi**2) - phi * math.sqrt(1 - target**2))
        / (g_j.norm() * math.sqrt(1 - target**2))
    )
    return g_i + coef * g_j


def test_first_step_projects_conflicting_gradients_like_pcgrad():
    g1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    g2 = torch.tensor([-1.0, 2.0], dtype=torch.float64)
    result = GradVac()(torch.stack([g1, g2]))
    # Targets start at 0: each gradient loses its component along the other.
    expected = (g1 - (g1 @ g2) / (g2 @ g2) * g2) + (g2 - (g1 @ g2) / (g1 @ g1) * g1)
    assert_close(result, expected)
    assert_close(result, torch.tensor([0.8, 2.4], dtype=torch.float64))


def test_second_step_reaches_the_moving_average_target():
    beta = 0.1
    g1 = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    g2 = torch.tensor([-2.0, 1.0, 0.5], dtype=torch.float64)
    matrix = torch.stack([g1, g2])
    aggregator = GradVac(beta=beta)
    aggregator(matrix)
    phi = _cos(g1, g2)
    target = beta * phi  # (1 - β)·0 + β·φ after the first step
    assert_close(
        aggregator.gramian_weighting.targets,
        torch.tensor([[0.0, target], [target, 0.0]], dtype=torch.float64),
    )

    result = aggregator(matrix)
    g1_vaccinated = _vaccinate(g1, g2, target)
    g2_vaccinated = _vaccinate(g2, g1, target)
    assert math.isclose(_cos(g1_vaccinated, g2), target, abs_tol=1e-12)
    assert math.isclose(_cos(g2_vaccinated, g1), target, abs_tol=1e-12)
    assert_close(result, g1_vaccinated + g2_vaccinated)
    new_target = (1 - beta) * target + beta * phi
    assert_close(
        aggregator.gramian_weighting.targets,
        torch.tensor([[0.0, new_target], [new_target, 0.0]], dtype=torch.float64),
    )


def test_non_conflicting_gradients_above_target_are_summed():
    matrix = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert_close(GradVac()(matrix), matrix.sum(dim=0))


def test_three_objectives_follow_the_sequential_rule():
    torch.manual_seed(3)
    matrix = torch.randn(3, 5, dtype=torch.float64)
    torch.manual_seed(7)
    result = GradVac()(matrix)
    # Replay the same random orders and apply the rule one pair at a time.
    torch.manual_seed(7)
    scores = torch.rand(3, 3)
    scores.fill_diagonal_(2.0)
    orders = scores.argsort(dim=1)[:, :2]
    expected = torch.zeros(5, dtype=torch.float64)
    for i in range(3):
        g = matrix[i]
        for j in orders[i].tolist():
            g = _vaccinate(g, matrix[j], 0.0)
        expected += g
    assert_close(result, expected)


def test_single_row_is_returned_unchanged():
    matrix = torch.tensor([[1.0, -2.0, 3.0]])
    assert_close(GradVac()(matrix), matrix[0])


def test_zero_matrix_gives_zeros():
    result = GradVac()(torch.zeros(3, 4))
    assert_close(result, torch.zeros(4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept(dtype):
    torch.manual_seed(0)
    matrix = torch.randn(4, 6, dtype=dtype)
    aggregator = GradVac()
    result = aggregator(matrix)
    assert result.dtype == dtype
    assert aggregator.gramian_weighting.targets.dtype == dtype
    assert torch.isfinite(result).all()


def test_weighting_gives_the_aggregation_weights():
    torch.manual_seed(0)
    matrix = torch.randn(4, 6, dtype=torch.float64)
    torch.manual_seed(1)
    weights = GradVacWeighting()(matrix @ matrix.T)
    torch.manual_seed(1)
    assert_close(weights @ matrix, GradVac()(matrix))


def test_reset_restores_initial_behaviour():
    torch.manual_seed(0)
    inputs = [torch.randn(3, 5) for _ in range(3)]
    assert_reset_restores_initial_behaviour(lambda: GradVac(beta=0.5), inputs)


def test_state_dict_round_trip():
    torch.manual_seed(0)
    inputs = [torch.randn(3, 5) for _ in range(4)]
    assert_state_dict_round_trip(lambda: GradVac(beta=0.5), inputs[:2], inputs[2:])


def test_changing_the_number_of_objectives_raises():
    aggregator = GradVac()
    aggregator(torch.randn(3, 4))
    with pytest.raises(ValueError, match="reset"):
        aggregator(torch.randn(2, 4))


def test_representations():
    assert repr(GradVac(beta=0.5)) == "GradVac(beta=0.5, eps=1e-08)"
    assert str(GradVac()) == "GradVac"
    assert repr(GradVacWeighting()) == "GradVacWeighting(beta=0.5, eps=1e-08)"


@pytest.mark.parametrize("beta", [-0.1, 1.5, float("nan")])
def test_invalid_beta_raises_value_error(beta):
    with pytest.raises(ValueError, match="beta"):
        GradVac(beta=beta)


@pytest.mark.parametrize("beta", ["0.1", None, True])
def test_non_real_beta_raises_type_error(beta):
    with pytest.raises(TypeError, match="beta"):
        GradVac(beta=beta)
