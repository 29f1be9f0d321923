import pytest
import torch
from torch.testing import assert_close

from torchjd.aggregation import FairGrad, FairGradWeighting


def _relative_residual(gramian, weights, alpha):
    targets = weights ** (-1.0 / alpha)
    return ((gramian @ weights - targets).abs() / targets).max().item()


@pytest.mark.parametrize("alpha", [0.2, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-3), (torch.float64, 1e-7)])
def test_weights_solve_the_fairness_system(alpha, dtype, tolerance):
    torch.manual_seed(0)
    matrix = torch.randn(5, 12, dtype=dtype)
    gramian = matrix @ matrix.T
    weights = FairGradWeighting(alpha=alpha)(gramian)
    assert weights.dtype == dtype
    assert (weights > 0).all()
    assert _relative_residual(gramian, weights, alpha) < tolerance


def test_orthogonal_gradients_hand_computed():
    # G = diag(4, 1), α = 1: 4 w1 = 1 / w1 and w2 = 1 / w2.
    weights = FairGradWeighting(alpha=1.0)(torch.tensor([[4.0, 0.0], [0.0, 1.0]]))
    assert_close(weights, torch.tensor([0.5, 1.0]))
    # α = 2: 4 w1 = w1^(-1/2), so w1 = 4^(-2/3).
    weights = FairGradWeighting(alpha=2.0)(torch.tensor([[4.0, 0.0], [0.0, 1.0]]))
    assert_close(weights, torch.tensor([4.0 ** (-2.0 / 3.0), 1.0]))


def test_aggregation_is_the_weighted_sum_of_rows():
    matrix = torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, -1.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    weights = FairGradWeighting(alpha=2.0)(matrix @ matrix.T)
    assert_close(FairGrad(alpha=2.0)(matrix), weights @ matrix)


def test_scaling_the_gramian_rescales_the_weights():
    torch.manual_seed(1)
    matrix = torch.randn(3, 6, dtype=torch.float64)
    gramian = matrix @ matrix.T
    weighting = FairGradWeighting(alpha=2.0)
    c = 1e6
    assert_close(weighting(c * gramian), c ** (-2.0 / 3.0) * weighting(gramian))


def test_single_row():
    # c w = w^(-1/α)  =>  w = c^(-α / (α + 1)).
    weights = FairGradWeighting(alpha=3.0)(torch.tensor([[9.0]], dtype=torch.float64))
    assert_close(weights, torch.tensor([9.0 ** (-0.75)], dtype=torch.float64))


def test_zero_matrix_gives_zeros():
    assert_close(FairGrad(alpha=1.0)(torch.zeros(3, 4)), torch.zeros(4))
    assert_close(FairGradWeighting(alpha=1.0)(torch.zeros(3, 3)), torch.zeros(3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_singular_gramian_gives_finite_weights(dtype):
    torch.manual_seed(2)
    rows = torch.randn(2, 5, dtype=dtype)
    matrix = torch.cat([rows, -rows[:1], torch.zeros(1, 5, dtype=dtype)])
    weights = FairGradWeighting(alpha=1.0)(matrix @ matrix.T)
    assert torch.isfinite(weights).all() and (weights > 0).all()
    assert torch.isfinite(FairGrad(alpha=1.0)(matrix)).all()


def test_representations():
    assert repr(FairGrad(alpha=2.0)) == "FairGrad(alpha=2.0, max_iters=None)"
    assert str(FairGrad(1.0)) == "FairGrad"
    assert repr(FairGradWeighting(1.0, 5)) == "FairGradWeighting(alpha=1.0, max_iters=5)"
    assert str(FairGradWeighting(1.0)) == "FairGradWeighting"


def test_alpha_zero_is_the_mean_and_alpha_is_settable():
    matrix = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    aggregator = FairGrad(alpha=0.0)
    assert_close(aggregator(matrix), matrix.mean(dim=0))
    aggregator.alpha = 1.0  # (G w)_i = 1 / w_i: w = [1/2, 1]
    assert_close(aggregator(matrix), torch.tensor([1.0, 1.0]))
    assert aggregator.gramian_weighting.alpha == 1.0
    with pytest.raises(ValueError, match="alpha"):
        aggregator.alpha = -1.0


@pytest.mark.parametrize("alpha", [-1.0, float("nan"), float("inf")])
def test_invalid_alpha_raises_value_error(alpha):
    with pytest.raises(ValueError, match="alpha"):
        FairGrad(alpha=alpha)


def test_invalid_types_raise_type_error():
    with pytest.raises(TypeError, match="alpha"):
        FairGradWeighting(alpha="1")
    with pytest.raises(TypeError, match="max_iters"):
        FairGrad(1.0, max_iters=1.5)
    with pytest.raises(ValueError, match="max_iters"):
        FairGrad(1.0, max_iters=0)
