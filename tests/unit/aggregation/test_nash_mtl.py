import copy

import torch
from pytest import mark, raises

from torchjd.aggregation import NashMTL
from torchjd.aggregation._nash_mtl import _solve_nash_equations


def _weights(matrix: torch.Tensor, **kwargs) -> torch.Tensor:
    return NashMTL(matrix.shape[0], max_norm=0.0, **kwargs).weights(matrix)


def _normalized_gramian(matrix: torch.Tensor) -> torch.Tensor:
    gramian = matrix @ matrix.T
    return gramian / torch.linalg.matrix_norm(gramian)


@mark.parametrize("seed", range(5))
@mark.parametrize("m", [1, 2, 3, 6])
def test_nash_mtl_weights_solve_the_bargaining_equations(seed: int, m: int):
    torch.manual_seed(seed)
    matrix = torch.randn(m, 10, dtype=torch.float64)
    alpha = _weights(matrix)
    # As in torchjd 0.18 and the authors' code: the equations of G / ||G||_F.
    gramian = _normalized_gramian(matrix)
    assert torch.all(alpha > 0)
    assert torch.allclose(gramian @ alpha, 1 / alpha, rtol=1e-9)


def test_nash_mtl_solves_ill_scaled_and_conflicting_problems():
    torch.manual_seed(0)
    matrix = torch.randn(4, 6, dtype=torch.float64) * torch.tensor(
        [[1e-3], [1.0], [1e2], [5.0]], dtype=torch.float64
    )
    matrix[1] = -0.9 * matrix[0] + 0.01 * matrix[1]
    alpha = _weights(matrix, optim_niter=60)
    assert torch.allclose(_normalized_gramian(matrix) @ alpha, 1 / alpha, rtol=1e-8)


@mark.parametrize("scale", [1e-15, 1e15])
def test_nash_mtl_is_scale_covariant(scale: float):
    torch.manual_seed(1)
    matrix = torch.randn(3, 5, dtype=torch.float64)
    result = NashMTL(3, max_norm=0.0)(matrix)
    assert torch.allclose(NashMTL(3, max_norm=0.0)(scale * matrix), scale * result)


def test_nash_mtl_is_permutation_equivariant():
    torch.manual_seed(2)
    matrix = torch.randn(4, 5, dtype=torch.float64)
    alpha = _weights(matrix)
    assert torch.allclose(_weights(matrix[[3, 1, 0, 2]]), alpha[[3, 1, 0, 2]])


def test_nash_mtl_hand_computed_values():
    # Orthogonal rows: α_i = 1 / sqrt(Ĝ_ii), so d has the component sqrt(||G||_F) along each row.
    # G = diag(4, 16), ||G||_F = sqrt(272).
    expected = torch.full((2,), 272.0**0.25)
    assert torch.allclose(NashMTL(2, max_norm=0.0)(torch.tensor([[2.0, 0.0], [0.0, 4.0]])), expected)
    # One row: Ĝ = [1], α = 1.
    assert torch.allclose(_weights(torch.tensor([[3.0, 4.0]])), torch.tensor([1.0]))


def test_nash_mtl_clips_the_norm():
    matrix = torch.tensor([[0.1, 0.0], [0.0, 0.1]])
    # Unclipped: Ĝ = I / sqrt(2), α = 2^(1/4) (1, 1), d = 0.1 * 2^(1/4) (1, 1).
    unclipped = 0.1 * 2**0.25 * torch.ones(2)
    assert torch.allclose(NashMTL(2, max_norm=0.0)(matrix), unclipped)
    assert torch.allclose(NashMTL(2, max_norm=0.1)(matrix), torch.ones(2) * 0.1 / 2**0.5)
    assert torch.allclose(NashMTL(2, max_norm=5.0)(matrix), unclipped)


def test_nash_mtl_reuses_weights_between_updates_and_resets():
    torch.manual_seed(3)
    first, second = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    aggregator = NashMTL(3, max_norm=0.0, update_weights_every=2)
    alpha_first = _weights(first)
    assert torch.allclose(aggregator.weights(first), alpha_first)
    assert torch.allclose(aggregator.weights(second), alpha_first)  # reused
    assert torch.allclose(aggregator.weights(second), _weights(second))  # recomputed
    aggregator.reset()
    assert int(aggregator.weighting.step) == 0
    assert torch.allclose(aggregator.weights(first), alpha_first)


def test_nash_mtl_state_round_trips_through_state_dict():
    torch.manual_seed(4)
    first, second = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    aggregator = NashMTL(3, max_norm=0.0, update_weights_every=3)
    aggregator(first)
    restored = NashMTL(3, max_norm=0.0, update_weights_every=3)
    restored.load_state_dict(aggregator.state_dict())
    assert int(restored.weighting.step) == 1
    assert torch.allclose(restored(second), aggregator(second))
    assert torch.allclose(copy.deepcopy(aggregator)(second), aggregator(second))


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nash_mtl_zero_matrix_and_dtype(dtype: torch.dtype):
    assert torch.equal(NashMTL(3)(torch.zeros(3, 2, dtype=dtype)), torch.zeros(2, dtype=dtype))
    torch.manual_seed(5)
    matrix = torch.randn(3, 6, dtype=torch.float64)
    result = NashMTL(3, max_norm=0.0)(matrix.to(dtype))
    assert result.dtype == dtype
    assert torch.allclose(result.double(), NashMTL(3, max_norm=0.0)(matrix), rtol=1e-4)


def test_nash_mtl_direction_stays_finite_when_a_combination_vanishes():
    # g_1 + g_2 = 0: no solution exists, but J^T α stays bounded along g_3's direction.
    matrix = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    result = NashMTL(3, max_norm=0.0)(matrix)
    assert torch.all(torch.isfinite(result))
    # Ĝ_33 = 1 / ||G||_F = 1 / sqrt(5): α_3 = 5^(1/4) = d_2.
    assert torch.isclose(result[1], torch.tensor(5.0, dtype=torch.float64) ** 0.25, rtol=1e-4)


def test_solver_output_is_positive():
    gramian = torch.tensor([[1.0, -0.99], [-0.99, 1.0]], dtype=torch.float64)
    alpha = _solve_nash_equations(gramian, 40)
    assert torch.all(alpha > 0)
    assert torch.allclose(gramian @ alpha, 1 / alpha)


def test_nash_mtl_repr_and_str():
    assert (
        repr(NashMTL(2))
        == "NashMTL(n_tasks=2, max_norm=1.0, update_weights_every=1, optim_niter=20)"
    )
    assert str(NashMTL(2)) == "NashMTL"


def test_nash_mtl_rejects_invalid_parameters_and_a_wrong_number_of_rows():
    with raises(ValueError, match="max_norm"):
        NashMTL(2, max_norm=-1.0)
    with raises(ValueError, match="update_weights_every"):
        NashMTL(2, update_weights_every=0)
    with raises(TypeError, match="update_weights_every"):
        NashMTL(2, update_weights_every=1.5)
    with raises(ValueError, match="optim_niter"):
        NashMTL(2, optim_niter=0)
    with raises(TypeError, match="max_norm"):
        NashMTL(2, max_norm=None)
    with raises(ValueError, match="n_tasks"):
        NashMTL(0)
    with raises(ValueError, match="n_tasks"):
        NashMTL(2)(torch.ones(3, 2))


def test_nash_mtl_hyperparameters_take_effect_on_the_next_call():
    matrix = torch.tensor([[0.1, 0.0], [0.0, 0.1]])
    aggregator = NashMTL(2, max_norm=0.0)
    aggregator(matrix)
    aggregator.max_norm = 0.1
    assert torch.allclose(aggregator(matrix), torch.ones(2) * 0.1 / 2**0.5)
    aggregator.n_tasks = 3
    with raises(ValueError, match="n_tasks"):
        aggregator(matrix)


def test_nash_mtl_gives_zero_weight_to_a_zero_row():
    matrix = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    # ||G||_F = sqrt(272): α_i = 272^(1/4) / ||g_i||.
    expected = torch.tensor([0.0, 0.5, 0.25], dtype=torch.float64) * 272.0**0.25
    assert torch.allclose(_weights(matrix), expected)
