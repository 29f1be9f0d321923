import pytest
import torch
from torch import Tensor
from torch.testing import assert_close
from unit.aggregation._stateful_checks import (
    assert_reset_restores_initial_behaviour,
    assert_state_dict_round_trip,
)

from torchjd.aggregation import GramianWeightedAggregator, CRMOGM, CRMOGMWeighting, Weighting


class _DiagonalShare(Weighting):
    """Deterministic Gramian weighting for the tests: each squared norm over their sum."""

    def forward(self, stat: Tensor) -> Tensor:
        diagonal = stat.diagonal()
        total = diagonal.sum()
        return diagonal / total if total > 0 else torch.zeros_like(diagonal)


class _Counting(Weighting):
    """A stateful inner weighting: returns ones times the number of calls since the last reset."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def reset(self):
        self.calls = 0

    def forward(self, stat: Tensor) -> Tensor:
        self.calls += 1
        return torch.full((stat.shape[0],), float(self.calls), dtype=stat.dtype)


def test_first_two_steps_hand_computed():
    # alpha is the weight of the previous weights, as in torchjd 0.18.
    aggregator = CRMOGM(_DiagonalShare(), alpha=0.75)
    first = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # inner: [0.9, 0.1]
    second = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # inner: [0.5, 0.5]
    assert_close(aggregator(first), torch.tensor([2.7, 0.1], dtype=torch.float64))
    # w_2 = 0.75 * [0.9, 0.1] + 0.25 * [0.5, 0.5] = [0.8, 0.2]
    assert_close(aggregator(second), torch.tensor([0.8, 0.2], dtype=torch.float64))
    assert_close(aggregator.gramian_weighting.weights, torch.tensor([0.8, 0.2], dtype=torch.float64))


def test_initial_weights_enter_the_first_average_and_alpha_one_freezes_them():
    initial = torch.tensor([0.5, 0.5], dtype=torch.float64)
    weighting = CRMOGMWeighting(_DiagonalShare(), alpha=0.75, initial_weights=initial)
    gramian = torch.tensor([[9.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # inner: [0.9, 0.1]
    # w_1 = 0.75 * [0.5, 0.5] + 0.25 * [0.9, 0.1]
    assert_close(weighting(gramian), torch.tensor([0.6, 0.4], dtype=torch.float64))
    frozen = CRMOGMWeighting(_DiagonalShare(), alpha=1.0, initial_weights=initial)
    assert_close(frozen(gramian), initial)
    assert_close(frozen(gramian), initial)
    with pytest.raises(ValueError, match="initial_weights"):
        CRMOGMWeighting(_DiagonalShare(), initial_weights=torch.ones(3))(gramian)


def test_alpha_is_settable_and_takes_effect_on_the_next_call():
    weighting = CRMOGMWeighting(_DiagonalShare(), alpha=0.5)
    weighting(torch.tensor([[9.0, 0.0], [0.0, 1.0]]))  # [0.9, 0.1]
    aggregator = GramianWeightedAggregator(weighting)
    aggregator.gramian_weighting.alpha = 0.0
    assert_close(weighting(torch.eye(2)), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="alpha"):
        weighting.alpha = 1.5


def test_alpha_zero_gives_back_the_inner_weighting():
    torch.manual_seed(0)
    weighting = CRMOGMWeighting(_DiagonalShare(), alpha=0.0)
    for _ in range(3):
        matrix = torch.randn(3, 4)
        assert_close(weighting(matrix @ matrix.T), _DiagonalShare()(matrix @ matrix.T))


def test_matrix_based_inner_weighting_receives_the_matrix():
    class FirstColumn(Weighting):
        def forward(self, stat: Tensor) -> Tensor:
            return stat[:, 0]

    weighting = CRMOGMWeighting(FirstColumn(), alpha=0.5)
    assert_close(weighting(torch.tensor([[1.0, 9.0, 9.0], [2.0, 9.0, 9.0]])), torch.tensor([1.0, 2.0]))
    assert_close(weighting(torch.tensor([[3.0, 9.0, 9.0], [0.0, 9.0, 9.0]])), torch.tensor([2.0, 1.0]))


def test_single_row():
    aggregator = CRMOGM(_DiagonalShare())
    assert_close(aggregator(torch.tensor([[2.0, -1.0]])), torch.tensor([2.0, -1.0]))


def test_zero_matrix_gives_zeros():
    assert_close(CRMOGM(_DiagonalShare())(torch.zeros(3, 4)), torch.zeros(4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept(dtype):
    aggregator = CRMOGM(_DiagonalShare(), alpha=0.5)
    aggregator(torch.ones(2, 3, dtype=dtype))
    result = aggregator(torch.eye(2, 3, dtype=dtype))
    assert result.dtype == dtype and aggregator.gramian_weighting.weights.dtype == dtype


def test_weights_are_constants_for_autograd():
    matrix = torch.tensor([[1.0, 2.0], [3.0, -1.0]], requires_grad=True)
    CRMOGM(_DiagonalShare(), alpha=0.5)(matrix).sum().backward()
    # Only the `weights @ matrix` product is differentiated.
    weights = _DiagonalShare()(matrix.detach() @ matrix.detach().T)
    assert_close(matrix.grad, weights[:, None].expand(2, 2))


def test_reset_also_resets_the_inner_weighting():
    inner = _Counting()
    weighting = CRMOGMWeighting(inner, alpha=0.5)
    gramian = torch.eye(2)
    weighting(gramian)
    weighting(gramian)
    weighting.reset()
    assert inner.calls == 0
    assert_close(weighting(gramian), torch.ones(2))


def test_reset_restores_initial_behaviour():
    torch.manual_seed(0)
    inputs = [torch.randn(3, 5) for _ in range(3)]
    assert_reset_restores_initial_behaviour(lambda: CRMOGM(_DiagonalShare(), alpha=0.3), inputs)


def test_state_dict_round_trip():
    torch.manual_seed(0)
    inputs = [torch.randn(3, 5) for _ in range(4)]
    assert_state_dict_round_trip(lambda: CRMOGM(_DiagonalShare(), alpha=0.3), inputs[:2], inputs[2:])


def test_changing_the_number_of_objectives_raises():
    aggregator = CRMOGM(_DiagonalShare())
    aggregator(torch.ones(3, 2))
    with pytest.raises(ValueError, match="reset"):
        aggregator(torch.ones(2, 2))


def test_representations():
    aggregator = CRMOGM(_DiagonalShare(), alpha=0.5)
    assert repr(aggregator) == (
        "CRMOGM(weighting=_DiagonalShare(), alpha=0.5, initial_weights=None)"
    )
    assert str(aggregator) == "CRMOGM"
    assert str(CRMOGMWeighting(_DiagonalShare())) == "CRMOGMWeighting"


@pytest.mark.parametrize("alpha", [-0.5, 1.5, float("nan")])
def test_invalid_alpha_raises_value_error(alpha):
    with pytest.raises(ValueError, match="alpha"):
        CRMOGM(_DiagonalShare(), alpha=alpha)


def test_invalid_weighting_raises_type_error():
    with pytest.raises(TypeError, match="weighting"):
        CRMOGM(lambda g: g.diagonal())
