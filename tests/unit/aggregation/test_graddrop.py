import torch
from pytest import mark, raises

from torchjd.aggregation import GradDrop


def _graddrop_by_loop(
    matrix: torch.Tensor, uniform: torch.Tensor, leak: list[float], f=lambda p: p
) -> torch.Tensor:
    m, n = matrix.shape
    result = torch.zeros(n, dtype=matrix.dtype)
    for k in range(n):
        column = matrix[:, k]
        total_abs = sum(abs(float(x)) for x in column)
        purity = 0.5 if total_abs == 0 else 0.5 * (1 + float(column.sum()) / total_abs)
        purity = f(purity)
        for i in range(m):
            value = float(column[i])
            kept = (purity > uniform[k] and value > 0) or (purity < uniform[k] and value < 0)
            result[k] += (leak[i] + (1 - leak[i]) * float(kept)) * value
    return result


@mark.parametrize("seed", range(4))
@mark.parametrize("leak", [None, [0.0, 0.3, 1.0]])
def test_graddrop_matches_the_plain_loop(seed: int, leak: list[float] | None):
    torch.manual_seed(seed)
    matrix = torch.randn(3, 7, dtype=torch.float64)
    aggregator = GradDrop() if leak is None else GradDrop(leak=torch.tensor(leak))
    torch.manual_seed(100 + seed)
    result = aggregator(matrix)
    torch.manual_seed(100 + seed)
    uniform = torch.rand(7, dtype=torch.float64)
    expected = _graddrop_by_loop(matrix, uniform, [0.0] * 3 if leak is None else leak)
    assert torch.allclose(result, expected)


def test_graddrop_keeps_each_sign_with_its_purity():
    # Every column is (3, -1): P = 1/2 (1 + 2 / 4) = 3/4, so the sum is 3 w.p. 3/4, else -1.
    n = 20_000
    matrix = torch.tensor([[3.0], [-1.0]]).expand(2, n)
    torch.manual_seed(0)
    result = GradDrop()(matrix)
    assert torch.all((result == 3.0) | (result == -1.0))
    assert abs(float((result == 3.0).double().mean()) - 0.75) < 0.02


def test_graddrop_without_conflict_or_with_full_leak_is_the_sum():
    torch.manual_seed(1)
    positive = torch.rand(4, 6) + 0.1
    assert torch.allclose(GradDrop()(positive), positive.sum(dim=0))
    assert torch.allclose(GradDrop()(-positive), -positive.sum(dim=0))
    mixed = torch.randn(4, 6)
    assert torch.allclose(GradDrop(leak=torch.ones(4))(mixed), mixed.sum(dim=0))


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_graddrop_single_row_zero_matrix_and_dtype(dtype: torch.dtype):
    row = torch.tensor([[1.0, -2.0, 0.0]], dtype=dtype)
    result = GradDrop()(row)
    assert result.dtype == dtype
    assert torch.equal(result, row[0])
    assert torch.equal(GradDrop()(torch.zeros(3, 2, dtype=dtype)), torch.zeros(2, dtype=dtype))


def test_graddrop_is_differentiable_through_the_masked_sum():
    matrix = torch.tensor([[1.0, 2.0], [3.0, 0.0]], requires_grad=True)
    GradDrop()(matrix).sum().backward()
    assert torch.equal(matrix.grad, torch.tensor([[1.0, 1.0], [1.0, 0.0]]))


def test_graddrop_repr_and_str():
    assert repr(GradDrop()) == "GradDrop(f=_identity, leak=None)"
    assert repr(GradDrop(leak=torch.tensor([0.5, 1.0]))) == "GradDrop(f=_identity, leak=[0.5, 1.0])"
    assert repr(GradDrop(f=torch.sigmoid)) == "GradDrop(f=sigmoid, leak=None)"
    assert str(GradDrop(leak=torch.tensor([0.5, 1.0]))) == "GradDrop"


def test_graddrop_rejects_invalid_leak():
    with raises(TypeError, match="`f`"):
        GradDrop(f=0.5)
    with raises(TypeError, match="leak"):
        GradDrop(leak=[0.1, 0.2])
    with raises(ValueError, match="leak"):
        GradDrop(leak=torch.ones(2, 2))
    with raises(ValueError, match="leak"):
        GradDrop(leak=torch.tensor([0.5, 1.5]))
    with raises(ValueError, match="leak"):
        GradDrop(leak=torch.ones(3))(torch.ones(2, 4))


def test_graddrop_applies_the_activation_to_the_purity():
    def sharpen(purity):
        # Monotonic, maps [0, 1] onto itself, odd around (1/2, 1/2).
        return 0.5 + 0.5 * torch.sign(purity - 0.5) * (2 * (purity - 0.5)).abs().sqrt()

    def sharpen_float(purity: float) -> float:
        return float(sharpen(torch.tensor(purity, dtype=torch.float64)))

    torch.manual_seed(4)
    matrix = torch.randn(3, 9, dtype=torch.float64)
    torch.manual_seed(40)
    result = GradDrop(f=sharpen)(matrix)
    torch.manual_seed(40)
    uniform = torch.rand(9, dtype=torch.float64)
    assert torch.allclose(result, _graddrop_by_loop(matrix, uniform, [0.0] * 3, sharpen_float))
