import torch
from pytest import mark, raises

from torchjd.aggregation import ConFIG


def _cosines(matrix: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    return matrix @ vector / (matrix.norm(dim=1) * vector.norm())


@mark.parametrize("seed", range(4))
@mark.parametrize("m", [2, 3, 6])
def test_config_has_equal_cosine_with_every_row(seed: int, m: int):
    torch.manual_seed(seed)
    matrix = torch.randn(m, 8, dtype=torch.float64)
    result = ConFIG()(matrix)
    cosines = _cosines(matrix, result)
    assert torch.allclose(cosines, cosines[0].expand(m))
    assert torch.all(cosines > 0)
    # Its length is the total projection of the rows on its direction.
    assert torch.isclose(result.norm(), (matrix @ result / result.norm()).sum())


def test_config_cosines_follow_the_preference_vector():
    torch.manual_seed(0)
    matrix = torch.randn(3, 5, dtype=torch.float64)
    preferences = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    cosines = _cosines(matrix, ConFIG(pref_vector=preferences)(matrix))
    assert torch.allclose(cosines / cosines[0], preferences)


def test_config_hand_computed_values():
    assert torch.allclose(
        ConFIG()(torch.tensor([[2.0, 0.0], [0.0, 1.0]])), torch.tensor([1.5, 1.5])
    )
    # g_1 = (1, 0), g_2 = (1, 1): U⁺ 1 is the vector with U v = 1, i.e. v = (1, √2 - 1).
    matrix = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    direction = torch.tensor([1.0, 2**0.5 - 1], dtype=torch.float64)
    direction = direction / direction.norm()
    expected = (matrix @ direction).sum() * direction
    assert torch.allclose(ConFIG()(matrix), expected)


def test_config_is_equivariant_to_scaling_and_invariant_to_permutation():
    torch.manual_seed(1)
    matrix = torch.randn(4, 6, dtype=torch.float64)
    result = ConFIG()(matrix)
    assert torch.allclose(ConFIG()(3.0 * matrix), 3.0 * result)
    assert torch.allclose(ConFIG()(matrix[[3, 0, 2, 1]]), result)
    # Rescaling rows keeps the direction (it depends on unit rows only).
    scaled = ConFIG()(matrix * torch.tensor([[0.1], [1.0], [10.0], [2.0]], dtype=torch.float64))
    assert torch.allclose(scaled / scaled.norm(), result / result.norm())


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_config_single_row_zero_rows_and_dtype(dtype: torch.dtype):
    row = torch.tensor([[3.0, -4.0]], dtype=dtype)
    result = ConFIG()(row)
    assert result.dtype == dtype
    assert torch.allclose(result, row[0])
    assert torch.equal(ConFIG()(torch.zeros(3, 2, dtype=dtype)), torch.zeros(2, dtype=dtype))
    matrix = torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=dtype)
    assert torch.allclose(ConFIG()(matrix), torch.tensor([2.0, 0.0], dtype=dtype))


def test_config_float32_is_close_to_float64():
    torch.manual_seed(2)
    matrix = torch.randn(4, 10, dtype=torch.float64)
    assert torch.allclose(ConFIG()(matrix.float()).double(), ConFIG()(matrix), atol=1e-4)


def test_config_is_differentiable():
    torch.manual_seed(3)
    matrix = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: ConFIG()(x), (matrix,))


def test_config_repr_and_str():
    assert repr(ConFIG()) == "ConFIG(pref_vector=None)"
    assert repr(ConFIG(pref_vector=torch.tensor([1.0, 2.0]))) == "ConFIG(pref_vector=[1.0, 2.0])"
    assert str(ConFIG()) == "ConFIG"


def test_config_rejects_invalid_parameters():
    with raises(TypeError, match="pref_vector"):
        ConFIG(pref_vector=(1.0, 2.0))
    with raises(ValueError, match="pref_vector"):
        ConFIG(pref_vector=torch.ones(2, 2))
    with raises(ValueError, match="pref_vector"):
        ConFIG(pref_vector=torch.ones(3))(torch.ones(2, 4))


@mark.parametrize("dtype", [torch.float32, torch.float64])
@mark.parametrize("factor", [1.0, 2.5, 1e3])
def test_config_on_antiparallel_rows_is_exactly_zero(factor: float, dtype: torch.dtype):
    # U = [u; -u], w = 1 is orthogonal to the range of U: U⁺ w = 0, so the direction is 0 (not a
    # normalized rounding error, which would conflict with one of the rows).
    g = torch.randn(7, generator=torch.Generator().manual_seed(0), dtype=dtype)
    result = ConFIG()(torch.stack([g, -factor * g]))
    assert result.norm() <= 16 * torch.finfo(dtype).eps * g.norm()


def test_config_on_antiparallel_rows_and_another_is_orthogonal_to_the_pair():
    # Least-squares: u · ĝ = -u · ĝ forces ĝ ⟂ g; the direction then follows the third row.
    g, h = torch.randn(2, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    h = h - (h @ g) / (g @ g) * g
    result = ConFIG()(torch.stack([g, -g, h]))
    assert torch.allclose(result @ g, torch.zeros((), dtype=torch.float64), atol=1e-12)
    assert torch.allclose(result, h, atol=1e-12)


def test_pref_vector_is_a_validated_settable_property():
    matrix = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    aggregator = ConFIG()
    aggregator.pref_vector = torch.tensor([1.0, 3.0])
    torch.testing.assert_close(aggregator(matrix), ConFIG(torch.tensor([1.0, 3.0]))(matrix))
    with raises(TypeError, match="`pref_vector`"):
        aggregator.pref_vector = [1.0, 3.0]
    with raises(ValueError, match="`pref_vector`"):
        aggregator.pref_vector = torch.ones(2, 2)
