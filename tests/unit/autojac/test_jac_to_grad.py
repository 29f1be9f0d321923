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


class _RowCountWeighting(Weighting):
    """Weights 1/m, from the number of rows only: asks for no statistic, like MeanWeighting."""

    _needs_statistic = False

    def forward(self, stat: Tensor) -> Tensor:
        assert stat.shape[1] == 0, "a statistic was computed although none is needed"
        return torch.full((stat.shape[0],), 1.0 / stat.shape[0], dtype=stat.dtype)


def _forbid_cat(monkeypatch):
    def forbidden_cat(*args, **kwargs):
        raise AssertionError("the concatenated Jacobian was formed")

    monkeypatch.setattr(torch, "cat", forbidden_cat)


def test_row_count_weighting_gets_neither_gramian_nor_matrix(monkeypatch):
    a, b, matrix = _params_with_jacs()
    expected = matrix.mean(dim=0)
    _forbid_cat(monkeypatch)
    weights = jac_to_grad([a, b], WeightedAggregator(_RowCountWeighting()))
    torch.testing.assert_close(weights, torch.full((3,), 1 / 3))
    torch.testing.assert_close(a.grad, expected[:6].reshape(2, 3))
    torch.testing.assert_close(b.grad, expected[6:])


def test_gramian_weighting_gets_the_gramian_of_the_whole_matrix_without_concatenation(monkeypatch):
    a, b, matrix = _params_with_jacs()
    received = []

    class _Recording(_RowNormWeighting):
        def forward(self, gramian: Tensor) -> Tensor:
            received.append(gramian)
            return super().forward(gramian)

    expected_gramian = matrix @ matrix.T
    _forbid_cat(monkeypatch)
    jac_to_grad([a, b], GramianWeightedAggregator(_Recording()))
    torch.testing.assert_close(received[0], expected_gramian)


def test_optimize_gramian_computation_gives_identical_results():
    results = []
    for optimize in [False, True]:
        a, b, _ = _params_with_jacs()
        weights = jac_to_grad(
            [a, b],
            GramianWeightedAggregator(_RowNormWeighting()),
            optimize_gramian_computation=optimize,
        )
        results.append((weights, a.grad, b.grad))
    for first, second in zip(*results):
        assert torch.equal(first, second)


def test_each_jac_is_freed_before_the_next_grad_is_computed(monkeypatch):
    import torchjd.autojac._jac_to_grad as module

    a, b, _ = _params_with_jacs()
    seen = []
    original = module._weighted_sum_of_rows

    def recording(weights, jacobian):
        seen.append(hasattr(a, "jac"))
        return original(weights, jacobian)

    monkeypatch.setattr(module, "_weighted_sum_of_rows", recording)
    jac_to_grad([a, b], GramianWeightedAggregator(_RowNormWeighting()))
    assert seen == [True, False]


def test_rejects_tensor_that_does_not_require_grad_and_writes_nothing():
    a, b, _ = _params_with_jacs()
    frozen = torch.zeros(2)
    frozen.jac = torch.ones(3, 2)
    with pytest.raises(ValueError, match="`tensors`.*require grad.*Element 2"):
        jac_to_grad([a, b, frozen], _CoordinateMax())
    assert a.grad is None and b.grad is None and frozen.grad is None
    assert hasattr(a, "jac") and hasattr(frozen, "jac")


def test_missing_jac_message_suggests_filtering_frozen_parameters():
    a, b, _ = _params_with_jacs()
    c = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="p.requires_grad"):
        jac_to_grad([a, b, c], _CoordinateMax())


@pytest.mark.parametrize("shape", [(3, 5), (3, 2, 2), (3,)])
def test_jac_of_wrong_shape_names_the_tensor_and_the_shapes(shape):
    a, b, _ = _params_with_jacs()
    c = torch.zeros(4, requires_grad=True)
    c.jac = torch.ones(shape)
    with pytest.raises(ValueError, match=r"Element 2 \(shape \[4\]\).*shape \[" ):
        jac_to_grad([a, b, c], _CoordinateMax())
    assert a.grad is None and b.grad is None and c.grad is None


def test_failing_aggregator_leaves_jacs_and_grads_untouched():
    a, b, _ = _params_with_jacs()
    jacobians = (a.jac, b.jac)

    class _Failing(Aggregator):
        def forward(self, matrix: Tensor) -> Tensor:
            raise RuntimeError("failed")

    with pytest.raises(RuntimeError, match="failed"):
        jac_to_grad([a, b], _Failing())
    assert a.jac is jacobians[0] and b.jac is jacobians[1]
    assert a.grad is None and b.grad is None


def test_signature_matches_torchjd_0_18():
    import inspect

    kinds = {name: p.kind for name, p in inspect.signature(jac_to_grad).parameters.items()}
    P = inspect.Parameter
    assert kinds == {
        "tensors": P.POSITIONAL_ONLY,
        "aggregator": P.POSITIONAL_OR_KEYWORD,
        "retain_jac": P.KEYWORD_ONLY,
        "optimize_gramian_computation": P.KEYWORD_ONLY,
    }
