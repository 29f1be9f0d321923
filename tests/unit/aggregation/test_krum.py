import torch
from pytest import mark, raises

from torchjd.aggregation import Krum, KrumWeighting


def _krum_by_brute_force(matrix: torch.Tensor, n_byzantine: int, n_selected: int) -> torch.Tensor:
    m = matrix.shape[0]
    scores = []
    for i in range(m):
        distances = sorted(
            float((matrix[i] - matrix[j]).square().sum()) for j in range(m) if j != i
        )
        scores.append(sum(distances[: m - n_byzantine - 2]))
    selected = sorted(range(m), key=lambda i: (scores[i], i))[:n_selected]
    return matrix[selected].mean(dim=0)


@mark.parametrize("seed", range(4))
@mark.parametrize(
    ["m", "n_byzantine", "n_selected"], [(3, 0, 1), (5, 1, 1), (7, 2, 3), (10, 3, 10), (6, 0, 4)]
)
def test_krum_matches_brute_force(seed: int, m: int, n_byzantine: int, n_selected: int):
    torch.manual_seed(seed)
    matrix = torch.randn(m, 4, dtype=torch.float64)
    result = Krum(n_byzantine=n_byzantine, n_selected=n_selected)(matrix)
    assert torch.allclose(result, _krum_by_brute_force(matrix, n_byzantine, n_selected))


def test_krum_ignores_byzantine_rows():
    torch.manual_seed(0)
    honest = torch.ones(6, 3) + 0.01 * torch.randn(6, 3)
    byzantine = torch.tensor([[100.0, -100.0, 5.0], [-50.0, 0.0, 80.0]])
    matrix = torch.cat([byzantine[:1], honest, byzantine[1:]])
    result = Krum(n_byzantine=2, n_selected=4)(matrix)
    assert torch.allclose(result, torch.ones(3), atol=0.05)
    weights = KrumWeighting(n_byzantine=2, n_selected=4)(matrix @ matrix.T)
    assert weights[0] == 0 and weights[-1] == 0
    assert torch.isclose(weights.sum(), torch.tensor(1.0))


def test_krum_is_translation_and_permutation_invariant():
    torch.manual_seed(1)
    matrix = torch.randn(7, 3, dtype=torch.float64)
    aggregator = Krum(n_byzantine=2, n_selected=2)
    result = aggregator(matrix)
    assert torch.allclose(aggregator(matrix + 5.0), result + 5.0)
    assert torch.allclose(aggregator(matrix[torch.randperm(7)]), result)
    assert torch.allclose(aggregator(3.0 * matrix), 3.0 * result)


def test_krum_selecting_every_row_is_the_mean():
    matrix = torch.randn(5, 3)
    assert torch.allclose(Krum(n_byzantine=1, n_selected=5)(matrix), matrix.mean(dim=0))


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_krum_zero_matrix_ties_and_dtype(dtype: torch.dtype):
    result = Krum(n_byzantine=0)(torch.zeros(3, 2, dtype=dtype))
    assert result.dtype == dtype
    assert torch.equal(result, torch.zeros(2, dtype=dtype))
    # All scores tie: the lowest index wins.
    weights = KrumWeighting(n_byzantine=0)(torch.ones(3, 3, dtype=dtype))
    assert torch.equal(weights, torch.tensor([1.0, 0.0, 0.0], dtype=dtype))


def test_krum_needs_enough_rows():
    with raises(ValueError, match="rows"):
        Krum(n_byzantine=0)(torch.ones(1, 3))  # m = 1
    with raises(ValueError, match="rows"):
        Krum(n_byzantine=2)(torch.ones(4, 3))  # m < n_byzantine + 3
    # As in torchjd 0.18, m = n_byzantine + 3 is enough (below the paper's m > 2 f + 2).
    matrix = torch.tensor([[1.0, 0.0], [1.1, 0.0], [5.0, 5.0], [-9.0, 3.0]])
    torch.testing.assert_close(Krum(n_byzantine=1)(matrix), matrix[0])
    with raises(ValueError, match="n_selected"):
        Krum(n_byzantine=0, n_selected=4)(torch.ones(3, 3))


def test_krum_repr_and_str():
    assert repr(Krum(n_byzantine=1)) == "Krum(n_byzantine=1, n_selected=1)"
    assert str(Krum(n_byzantine=1)) == "Krum"
    assert (
        repr(KrumWeighting(n_byzantine=2, n_selected=3))
        == "KrumWeighting(n_byzantine=2, n_selected=3)"
    )
    assert str(KrumWeighting(n_byzantine=2)) == "KrumWeighting"


def test_krum_rejects_invalid_parameters():
    with raises(ValueError, match="n_byzantine"):
        Krum(n_byzantine=-1)
    with raises(TypeError, match="n_byzantine"):
        Krum(n_byzantine=1.0)
    with raises(ValueError, match="n_selected"):
        Krum(n_byzantine=1, n_selected=0)
    with raises(TypeError, match="n_selected"):
        KrumWeighting(n_byzantine=1, n_selected=True)
