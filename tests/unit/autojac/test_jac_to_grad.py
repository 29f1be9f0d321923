import pytest
import torch
from torch import Tensor

from torchjd.aggregation import Aggregator, GramianWeightedAggregator, WeightedAggregator, Weighting
from torchjd.autojac import jac_to_grad


class _RowNormWeighting(Weighting):
    """Weights each row by the inverse of its squared norm, read from the Gramian's diagonal."""

    def forward(self, gramian: Tensor) -> Tensor:
        return 1.0 / gramian.diagonal()


class _FirstRowsWeighting(Weighting):
    def forward(self, matrix: Tensor) -> Tensor:
        weights = torch.zeros(matrix.shape[0], dtype=matrix.dtype)
        weights[0] = 1.0
        return weights


class _CoordinateMax(Aggregator):
    def forward(self, matrix: Tensor) -> Tensor:
        return matrix.max(dim=0).values


def _params_with_jacs():
    torch.manual_seed(0)
    a = torch.randn(2, 3, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    a.jac = torch.randn(3, 2, 3)
    b.jac = torch.randn(3, 4)
    matrix = torch.cat([a.jac.reshape(3, -1), b.jac], dim=1)  # [3, 10]
    return a, b, matrix


@pytest.mark.parametrize("optimize", [False, True])
def test_gramian_weighted_aggregation_is_split_into_grads(optimize):
    a, b, matrix = _params_with_jacs()
    expected_weights = 1.0 / (matrix**2).sum(dim=1)
    expected = expected_weights @ matrix
    weights = jac_to_grad(
        [a, b], GramianWeightedAggregator(_RowNormWeighting()), optimize_gramian_computation=optimize
    )
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(a.grad, expected[:6].reshape(2, 3))
    torch.testing.assert_close(b.grad, expected[6:])
    assert not hasattr(a, "jac") and not hasattr(b, "jac")


def test_matrix_weighted_aggregator_returns_weights():
    a, b, matrix = _params_with_jacs()
    weights = jac_to_grad([a, b], WeightedAggregator(_FirstRowsWeighting()), retain_jac=True)
    torch.testing.assert_close(weights, torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(b.grad, matrix[0, 6:])
    assert a.jac.shape == (3, 2, 3)  # retained


def test_non_weighted_aggregator_returns_none_and_accumulates():
    a, b, matrix = _params_with_jacs()
    b.grad = torch.ones(4)
    assert jac_to_grad([a, b], _CoordinateMax()) is None
    expected = matrix.max(dim=0).values
    torch.testing.assert_close(a.grad, expected[:6].reshape(2, 3))
    torch.testing.assert_close(b.grad, 1.0 + expected[6:])


def test_optimize_gramian_never_concatenates(monkeypatch):
    a, b, _ = _params_with_jacs()

    def forbidden_cat(*args, **kwargs):
        raise AssertionError("the concatenated Jacobian was formed")

    monkeypatch.setattr(torch, "cat", forbidden_cat)
    jac_to_grad([a, b], GramianWeightedAggregator(_RowNormWeighting()), optimize_gramian_computation=True)
    assert a.grad is not None


def test_optimize_gramian_requires_gramian_aggregator():
    a, b, _ = _params_with_jacs()
    with pytest.raises(ValueError, match="optimize_gramian_computation"):
        jac_to_grad([a, b], _CoordinateMax(), optimize_gramian_computation=True)
    assert a.grad is None and hasattr(a, "jac")


def test_rejects_tensors_without_jac_and_writes_nothing():
    a, b, _ = _params_with_jacs()
    c = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="`tensors`.*`.jac`"):
        jac_to_grad([a, b, c], _CoordinateMax())
    assert a.grad is None and b.grad is None and hasattr(a, "jac")


def test_rejects_inconsistent_rows_and_writes_nothing():
    a, b, _ = _params_with_jacs()
    b.jac = torch.randn(2, 4)
    with pytest.raises(ValueError, match="same number of rows"):
        jac_to_grad([a, b], _CoordinateMax())
    assert a.grad is None


def test_rejects_bad_arguments():
    a, b, _ = _params_with_jacs()
    with pytest.raises(ValueError, match="`tensors`"):
        jac_to_grad([], _CoordinateMax())
    with pytest.raises(TypeError, match="`aggregator`"):
        jac_to_grad([a, b], lambda matrix: matrix.mean(dim=0))
    with pytest.raises(ValueError, match="`tensors`.*twice"):
        jac_to_grad([a, a], _CoordinateMax())


def test_works_under_autocast_and_keeps_full_precision():
    a, b, matrix = _params_with_jacs()
    expected = (1.0 / (matrix**2).sum(dim=1)) @ matrix
    with torch.autocast("cpu", dtype=torch.bfloat16):
        jac_to_grad([a, b], GramianWeightedAggregator(_RowNormWeighting()))
    assert b.grad.dtype == torch.float32
    torch.testing.assert_close(b.grad, expected[6:])
