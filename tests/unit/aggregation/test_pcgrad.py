import itertools

import torch
from pytest import mark

from torchjd.aggregation import PCGrad, PCGradWeighting


def _pcgrad_by_loop(matrix: torch.Tensor, orders: list[list[int]]) -> torch.Tensor:
    """PCGrad written plainly: row i is projected off the rows orders[i], one after the other."""
    result = torch.zeros_like(matrix[0])
    for i, order in enumerate(orders):
        projected = matrix[i].clone()
        for j in order:
            dot = projected @ matrix[j]
            if dot < 0:
                projected = projected - dot / (matrix[j] @ matrix[j]) * matrix[j]
        result = result + projected
    return result


def _all_possible_results(matrix: torch.Tensor) -> list[torch.Tensor]:
    m = matrix.shape[0]
    per_row_orders = [
        list(itertools.permutations([j for j in range(m) if j != i])) for i in range(m)
    ]
    return [
        _pcgrad_by_loop(matrix, [list(order) for order in orders])
        for orders in itertools.product(*per_row_orders)
    ]


@mark.parametrize("seed", range(5))
def test_pcgrad_matches_the_plain_loop_for_two_rows(seed: int):
    torch.manual_seed(seed)
    matrix = torch.randn(2, 5, dtype=torch.float64)
    assert torch.allclose(PCGrad()(matrix), _pcgrad_by_loop(matrix, [[1], [0]]))


@mark.parametrize("seed", range(5))
def test_pcgrad_matches_the_plain_loop_for_some_orders_of_three_rows(seed: int):
    torch.manual_seed(seed)
    matrix = torch.randn(3, 4, dtype=torch.float64)
    candidates = _all_possible_results(matrix)
    for _ in range(4):
        result = PCGrad()(matrix)
        assert any(torch.allclose(result, candidate) for candidate in candidates)


def test_pcgrad_draws_every_order_of_three_rows():
    # Chosen so that the 8 combinations of orders give 8 distinct results.
    torch.manual_seed(11)
    matrix = torch.randn(3, 3, dtype=torch.float64)
    candidates = _all_possible_results(matrix)
    seen = set()
    for _ in range(200):
        result = PCGrad()(matrix)
        seen.add(next(k for k, c in enumerate(candidates) if torch.allclose(result, c)))
    distinct = {tuple(c.round(decimals=8).tolist()) for c in candidates}
    assert len(seen) >= len(distinct)


def test_pcgrad_is_reproducible_under_manual_seed():
    matrix = torch.randn(6, 4)
    torch.manual_seed(5)
    first = PCGrad()(matrix)
    torch.manual_seed(5)
    assert torch.equal(PCGrad()(matrix), first)


def test_pcgrad_hand_computed_values():
    matrix = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    # g1 - (-1 / 2) g2 = [0.5, 0.5]; g2 - (-1 / 1) g1 = [0, 1].
    assert torch.allclose(PCGrad()(matrix), torch.tensor([0.5, 1.5]))
    assert torch.allclose(PCGradWeighting()(matrix @ matrix.T), torch.tensor([2.0, 1.5]))


def test_pcgrad_without_conflict_is_the_sum():
    matrix = torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.0, 1.0], [1.0, 1.0, 1.0]])
    assert torch.allclose(PCGrad()(matrix), matrix.sum(dim=0))


def test_pcgrad_scales_linearly():
    torch.manual_seed(3)
    matrix = torch.randn(2, 4, dtype=torch.float64)
    assert torch.allclose(PCGrad()(2.5 * matrix), 2.5 * PCGrad()(matrix))


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pcgrad_single_row_zero_rows_and_dtype(dtype: torch.dtype):
    row = torch.tensor([[1.0, -2.0]], dtype=dtype)
    assert torch.equal(PCGrad()(row), row[0])
    assert torch.equal(PCGrad()(torch.zeros(3, 2, dtype=dtype)), torch.zeros(2, dtype=dtype))
    # A zero row conflicts with nothing and leaves the others untouched.
    matrix = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=dtype)
    result = PCGrad()(matrix)
    assert result.dtype == dtype
    assert torch.allclose(result, torch.tensor([1.0, 1.0], dtype=dtype))


def test_pcgrad_repr_and_str():
    assert repr(PCGrad()) == "PCGrad()"
    assert str(PCGrad()) == "PCGrad"
    assert repr(PCGradWeighting()) == "PCGradWeighting()"
    assert str(PCGradWeighting()) == "PCGradWeighting"


def test_pcgrad_of_two_rows_does_not_depend_on_their_order():
    torch.manual_seed(6)
    matrix = torch.randn(2, 5, dtype=torch.float64)
    assert torch.allclose(PCGrad()(matrix[[1, 0]]), PCGrad()(matrix))
