import copy

import torch
from pytest import mark, raises

from torchjd.aggregation import NashMTL
from torchjd.aggregation._nash_mtl import _solve_nash_equations


def _weights(matrix: torch.Tensor, **kwargs) -> torch.Tensor:
    return NashMTL(max_norm=0.0, **kwargs).weights(matrix)


@mark.parametrize("seed", range(5))
@mark.parametrize("m", [1, 2, 3, 6])
def test_nash_mtl_weights_solve_the_bargaining_equations(seed: int, m: int):
    torch.manual_seed(seed)
    matrix = torch.randn(m, 10, dtype=torch.float64)
    alpha = _weights(matrix)
    gramian = matrix @ matrix.T
    assert torch.all(alpha > 0)
    assert torch.allclose(gramian @ alpha, 1 / alpha, rtol=1e-9)
    # Each objective improves by 1 / α_i along the aggregation.
    assert torch.allclose(matrix @ NashMTL(max_norm=0.0)(matrix), 1 / alpha, rtol=1e-9)


def test_nash_mtl_solves_ill_scaled_and_conflicting_problems():
    torch.manual_seed(0)
    matrix = torch.randn(4, 6, dtype=torch.float64) * torch.tensor(
        [[1e-3], [1.0], [1e2], [5.0]], dtype=torch.float64
    )
    matrix[1] = -0.9 * matrix[0] + 0.01 * matrix[1]
    alpha = _weights(matrix, optim_niter=60)
    assert torch.allclose((matrix @ matrix.T) @ alpha, 1 / alpha, rtol=1e-8)


@mark.parametrize("scale", [1e-15, 1e15])
def test_nash_mtl_is_scale_free(scale: float):
    torch.manual_seed(1)
    matrix = torch.randn(3, 5, dtype=torch.float64)
    result = NashMTL(max_norm=0.0)(matrix)
    assert torch.allclose(NashMTL(max_norm=0.0)(scale * matrix), result)


def test_nash_mtl_is_permutation_equivariant():
    torch.manual_seed(2)
    matrix = torch.randn(4, 5, dtype=torch.float64)
    alpha = _weights(matrix)
    assert torch.allclose(_weights(matrix[[3, 1, 0, 2]]), alpha[[3, 1, 0, 2]])


def test_nash_mtl_hand_computed_values():
    # Orthogonal rows: α_i = 1 / ||g_i||. One row: α = 1 / ||g||.
    assert torch.allclose(
        NashMTL(max_norm=0.0)(torch.tensor([[2.0, 0.0], [0.0, 4.0]])), torch.tensor([1.0, 1.0])
    )
    assert torch.allclose(_weights(torch.tensor([[3.0, 4.0]])), torch.tensor([0.2]))


def test_nash_mtl_clips_the_norm():
    matrix = torch.tensor([[0.1, 0.0], [0.0, 0.1]])
    # Unclipped: α = (10, 10), d = (1, 1) of norm sqrt(2).
    result = NashMTL(max_norm=1.0)(matrix)
    assert torch.allclose(result, torch.tensor([1.0, 1.0]) / 2**0.5)
    assert torch.allclose(NashMTL(max_norm=5.0)(matrix), torch.tensor([1.0, 1.0]))


def test_nash_mtl_reuses_weights_between_updates_and_resets():
    torch.manual_seed(3)
    first, second = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    aggregator = NashMTL(max_norm=0.0, update_weights_every=2)
    alpha_first = _weights(first)
    assert torch.allclose(aggregator.weights(first), alpha_first)
    assert torch.allclose(aggregator.weights(second), alpha_first)  # reused
    assert torch.allclose(aggregator.weights(second), _weights(second))  # recomputed
    aggregator.reset()
    assert int(aggregator.gramian_weighting.step) == 0
    assert torch.allclose(aggregator.weights(first), alpha_first)
    # A matrix with another number of rows cannot reuse the weights.
    assert torch.allclose(aggregator.weights(first[:2]), _weights(first[:2]))


def test_nash_mtl_state_round_trips_through_state_dict():
    torch.manual_seed(4)
    first, second = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    aggregator = NashMTL(max_norm=0.0, update_weights_every=3)
    aggregator(first)
    restored = NashMTL(max_norm=0.0, update_weights_every=3)
    restored.load_state_dict(aggregator.state_dict())
    assert int(restored.gramian_weighting.step) == 1
    assert torch.allclose(restored(second), aggregator(second))
    assert torch.allclose(copy.deepcopy(aggregator)(second), aggregator(second))


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nash_mtl_zero_matrix_and_dtype(dtype: torch.dtype):
    assert torch.equal(NashMTL()(torch.zeros(3, 2, dtype=dtype)), torch.zeros(2, dtype=dtype))
    torch.manual_seed(5)
    matrix = torch.randn(3, 6, dtype=torch.float64)
    result = NashMTL(max_norm=0.0)(matrix.to(dtype))
    assert result.dtype == dtype
    assert torch.allclose(result.double(), NashMTL(max_norm=0.0)(matrix), rtol=1e-4)


def test_nash_mtl_direction_stays_finite_when_a_combination_vanishes():
    # g_1 + g_2 = 0: no solution exists, but J^T α stays bounded along g_3's direction.
    matrix = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    result = NashMTL(max_norm=0.0)(matrix)
    assert torch.all(torch.isfinite(result))
    assert torch.isclose(result[1], torch.tensor(1.0, dtype=torch.float64), rtol=1e-4)


def test_solver_output_is_positive():
    gramian = torch.tensor([[1.0, -0.99], [-0.99, 1.0]], dtype=torch.float64)
    alpha = _solve_nash_equations(gramian, 40)
    assert torch.all(alpha > 0)
    assert torch.allclose(gramian @ alpha, 1 / alpha)


def test_nash_mtl_repr_and_str():
    assert repr(NashMTL()) == "NashMTL(max_norm=1.0, update_weights_every=1, optim_niter=20)"
    assert str(NashMTL()) == "NashMTL"


def test_nash_mtl_rejects_invalid_parameters():
    with raises(ValueError, match="max_norm"):
        NashMTL(max_norm=-1.0)
    with raises(ValueError, match="update_weights_every"):
        NashMTL(update_weights_every=0)
    with raises(TypeError, match="update_weights_every"):
        NashMTL(update_weights_every=1.5)
    with raises(ValueError, match="optim_niter"):
        NashMTL(optim_niter=0)
    with raises(TypeError, match="max_norm"):
        NashMTL(max_norm=None)


def test_nash_mtl_gives_zero_weight_to_a_zero_row():
    matrix = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    assert torch.allclose(_weights(matrix), torch.tensor([0.0, 0.5, 0.25], dtype=torch.float64))
