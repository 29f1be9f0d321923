import itertools

import torch
from pytest import mark, raises

from torchjd.aggregation import MGDA, MGDAWeighting


def _min_norm_point_by_faces(matrix: torch.Tensor) -> torch.Tensor:
    """Exact min-norm point of the convex hull of the rows: best over every face of the simplex."""
    m = matrix.shape[0]
    gramian = matrix @ matrix.T
    best = None
    for size in range(1, m + 1):
        for face in itertools.combinations(range(m), size):
            indices = list(face)
            sub_gramian = gramian[indices][:, indices]
            # KKT of min w^T G_S w s.t. sum(w) = 1: [[2 G_S, 1], [1^T, 0]] [w; mu] = [0; 1].
            system = torch.zeros(size + 1, size + 1, dtype=matrix.dtype)
            system[:size, :size] = 2 * sub_gramian
            system[:size, size] = 1.0
            system[size, :size] = 1.0
            rhs = torch.zeros(size + 1, dtype=matrix.dtype)
            rhs[size] = 1.0
            solution = torch.linalg.lstsq(system, rhs.unsqueeze(1)).solution.squeeze(1)
            weights = solution[:size]
            if torch.any(weights < -1e-12) or not torch.isclose(
                weights.sum(), torch.ones(1, dtype=matrix.dtype)
            ):
                continue
            point = weights @ matrix[indices]
            if best is None or point.norm() < best.norm():
                best = point
    return best


def _min_norm_point_by_grid(matrix: torch.Tensor) -> torch.Tensor:
    t = torch.linspace(0.0, 1.0, 100_001, dtype=matrix.dtype).unsqueeze(1)
    points = t * matrix[0] + (1 - t) * matrix[1]
    return points[points.norm(dim=1).argmin()]


@mark.parametrize("seed", range(5))
def test_mgda_is_the_min_norm_point_for_two_rows(seed: int):
    torch.manual_seed(seed)
    matrix = torch.randn(2, 4, dtype=torch.float64)
    result = MGDA()(matrix)
    assert torch.allclose(result, _min_norm_point_by_grid(matrix), atol=1e-4)
    assert torch.allclose(result, _min_norm_point_by_faces(matrix), atol=1e-10)


@mark.parametrize("seed", range(6))
@mark.parametrize("n", [2, 5])
def test_mgda_is_the_min_norm_point_for_three_rows(seed: int, n: int):
    torch.manual_seed(seed)
    matrix = torch.randn(3, n, dtype=torch.float64)
    result = MGDA(epsilon=1e-14, max_iters=2000)(matrix)
    expected = _min_norm_point_by_faces(matrix)
    assert result.norm() ** 2 <= expected.norm() ** 2 + 1e-6
    assert torch.allclose(result, expected, atol=1e-6)


def test_mgda_weights_lie_on_the_simplex():
    torch.manual_seed(0)
    matrix = torch.randn(6, 3)
    weights = MGDAWeighting()(matrix @ matrix.T)
    assert torch.all(weights >= 0)
    assert torch.isclose(weights.sum(), torch.tensor(1.0))


def test_mgda_does_not_conflict_when_nonzero():
    torch.manual_seed(1)
    matrix = torch.randn(4, 10, dtype=torch.float64)
    result = MGDA(epsilon=1e-10, max_iters=10_000)(matrix)
    assert torch.all(matrix @ result >= result.norm() ** 2 - 1e-6)


def test_mgda_hand_computed_values():
    # Orthogonal rows: w ∝ 1 / ||g_i||^2.
    matrix = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    assert torch.allclose(MGDA()(matrix), torch.tensor([0.4, 0.8]))
    # A row inside the hull closer to the origin than the others wins alone.
    matrix = torch.tensor([[1.0, 1.0], [1.0, 0.0], [2.0, -1.0]])
    assert torch.allclose(
        MGDA(epsilon=1e-9, max_iters=1000)(matrix), torch.tensor([1.0, 0.0]), atol=1e-8
    )


def test_mgda_scaling_and_permutation():
    torch.manual_seed(2)
    matrix = torch.randn(3, 5, dtype=torch.float64)
    aggregator = MGDA(epsilon=1e-14, max_iters=2000)
    result = aggregator(matrix)
    assert torch.allclose(aggregator(3.0 * matrix), 3.0 * result, atol=1e-6)
    assert torch.allclose(aggregator(matrix[[2, 0, 1]]), result, atol=1e-8)


@mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mgda_keeps_dtype_single_row_and_zero_matrix(dtype: torch.dtype):
    row = torch.tensor([[3.0, -4.0]], dtype=dtype)
    assert MGDA()(row).dtype == dtype
    assert torch.equal(MGDA()(row), row[0])
    weights = MGDAWeighting()(torch.zeros(3, 3, dtype=dtype))
    assert torch.allclose(weights, torch.full((3,), 1 / 3, dtype=dtype))
    assert torch.equal(MGDA()(torch.zeros(3, 2, dtype=dtype)), torch.zeros(2, dtype=dtype))


def test_mgda_does_not_track_gradients_of_weights():
    matrix = torch.randn(3, 4, requires_grad=True)
    weights = MGDAWeighting()(matrix @ matrix.T)
    assert not weights.requires_grad


def test_mgda_repr_and_str():
    assert repr(MGDA()) == "MGDA(epsilon=0.001, max_iters=100)"
    assert str(MGDA()) == "MGDA"
    assert (
        repr(MGDAWeighting(epsilon=0.1, max_iters=5)) == "MGDAWeighting(epsilon=0.1, max_iters=5)"
    )
    assert str(MGDAWeighting()) == "MGDAWeighting"


def test_mgda_rejects_invalid_parameters():
    with raises(ValueError, match="epsilon"):
        MGDA(epsilon=-1.0)
    with raises(ValueError, match="max_iters"):
        MGDA(max_iters=0)
    with raises(TypeError, match="max_iters"):
        MGDA(max_iters=2.5)
    with raises(TypeError, match="epsilon"):
        MGDA(epsilon="small")


@mark.parametrize("seed", range(8))
@mark.parametrize("m,n", [(4, 6), (5, 3), (6, 2)])
def test_mgda_default_is_the_exact_min_norm_point(seed: int, m: int, n: int):
    # The default (epsilon=0.001, max_iters=100) is exact, unlike 0.18's early-stopped Frank-Wolfe.
    torch.manual_seed(seed)
    matrix = torch.randn(m, n, dtype=torch.float64)
    if seed % 2:
        matrix[1] = matrix[0]  # repeated rows
    if seed % 3 == 0:
        matrix[2] = -0.5 * matrix[0]  # opposite rows: the hull contains 0
    expected = _min_norm_point_by_faces(matrix)
    assert torch.allclose(MGDA()(matrix), expected, atol=1e-10)


def _kkt_gap(gramian: torch.Tensor, weights: torch.Tensor) -> float:
    """``w^T G w - min_i (G w)_i`` over ``max_i G_ii``: 0 exactly at the optimum on the simplex."""
    gradient = gramian @ weights
    return float((weights @ gradient - gradient.min()) / gramian.diagonal().max())


@mark.parametrize(
    "kind,m,n", [("gaussian", 64, 500), ("shared", 64, 500), ("wide", 64, 20), ("wide", 200, 30)]
)
def test_mgda_satisfies_the_optimality_conditions_at_larger_sizes(kind: str, m: int, n: int):
    torch.manual_seed(m + n)
    matrix = torch.randn(m, n, dtype=torch.float64)
    if kind == "shared":  # a common component: the optimum has a small support
        matrix = matrix + 3.0 * torch.randn(1, n, dtype=torch.float64) * torch.rand(m, 1)
    gramian = matrix @ matrix.T
    weights = MGDAWeighting()(gramian)
    assert weights.min() >= 0.0
    assert abs(float(weights.sum()) - 1.0) < 1e-12
    # Complementarity: every row with weight has the smallest (G w)_i, which is w^T G w.
    assert abs(_kkt_gap(gramian, weights)) < 1e-10
    gradient = gramian @ weights
    support = weights > 0
    assert (gradient[support] - weights @ gradient).abs().max() < 1e-9 * gramian.diagonal().max()


def test_mgda_float32_is_exact_to_its_precision():
    torch.manual_seed(0)
    matrix = torch.randn(32, 100)
    gramian = matrix @ matrix.T
    weights = MGDAWeighting()(gramian)
    assert weights.dtype == torch.float32
    assert abs(_kkt_gap(gramian.double(), weights.double())) < 1e-5


def test_mgda_max_iters_bounds_the_pivoting_and_keeps_simplex_weights():
    torch.manual_seed(1)
    matrix = torch.randn(40, 200, dtype=torch.float64)
    matrix = matrix + 3.0 * torch.randn(1, 200, dtype=torch.float64) * torch.rand(40, 1)
    weights = MGDAWeighting(max_iters=1)(matrix @ matrix.T)
    assert weights.min() >= 0.0
    assert torch.isclose(weights.sum(), torch.tensor(1.0, dtype=torch.float64))


def _structured_matrix(kind: str, m: int, dtype: torch.dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(m)
    if kind == "gaussian":  # rows far from parallel: the full support, by conjugate gradients
        return torch.randn(m, 2000, generator=generator, dtype=dtype)
    if kind == "duplicated":  # a singular Gramian with the full support
        return torch.randn((m + 1) // 2, 300, generator=generator, dtype=dtype).repeat(2, 1)[:m]
    if kind == "opposite":  # rows g and -c g: the hull contains the origin, many optimal weights
        matrix = torch.randn(m, 300, generator=generator, dtype=dtype)
        half = m // 2
        scales = torch.rand(half, 1, generator=generator, dtype=dtype)
        matrix[half : 2 * half] = -scales * matrix[:half]
        return matrix
    if kind == "low rank":
        rank = m // 5
        left = torch.randn(m, rank, generator=generator, dtype=dtype)
        return left @ torch.randn(rank, 300, generator=generator, dtype=dtype)
    if kind == "more rows than columns":
        return torch.randn(m, 15, generator=generator, dtype=dtype)
    if kind == "square":  # a large support that is not full
        return torch.randn(m, m, generator=generator, dtype=dtype)
    # "shared": a common component, so that the optimum has a small support
    matrix = torch.randn(m, 300, generator=generator, dtype=dtype)
    common = torch.randn(1, 300, generator=generator, dtype=dtype)
    return matrix + 3.0 * common * torch.rand(m, 1, generator=generator, dtype=dtype)


_KINDS = [
    "gaussian", "duplicated", "opposite", "low rank", "more rows than columns", "shared", "square"
]


@mark.parametrize("dtype,tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@mark.parametrize("m", [12, 100, 300])
@mark.parametrize("kind", _KINDS)
def test_mgda_satisfies_the_optimality_conditions_on_structured_gramians(
    kind: str, m: int, dtype: torch.dtype, tolerance: float
):
    matrix = _structured_matrix(kind, m, dtype)
    gramian = matrix @ matrix.T
    weights = MGDAWeighting()(gramian)
    assert weights.dtype == dtype
    assert weights.min() >= 0.0
    assert abs(float(weights.double().sum()) - 1.0) < 10 * torch.finfo(dtype).eps
    # The KKT conditions, in float64 on the given Gramian: (G w)_i >= w^T G w everywhere, with
    # equality on the support.
    exact_gramian = gramian.double()
    gradient = exact_gramian @ weights.double()
    value = weights.double() @ gradient
    scale = exact_gramian.diagonal().max()
    assert (gradient - value).min() >= -tolerance * scale
    support = weights > 0
    assert (gradient[support] - value).abs().max() <= tolerance * scale


@mark.parametrize("seed", range(4))
@mark.parametrize("m", [7, 9, 10])
@mark.parametrize("kind", ["gaussian", "duplicated", "opposite", "more rows than columns"])
def test_mgda_matches_the_best_face_with_the_python_and_torch_solvers(kind: str, m: int, seed: int):
    # 7 rows run on Python floats, 9 and 10 on torch: both against the brute force over faces.
    matrix = _structured_matrix(kind, m, torch.float64)[:, : 3 + seed]
    expected = _min_norm_point_by_faces(matrix)
    assert torch.allclose(MGDA()(matrix), expected, atol=1e-9 * matrix.norm())


def test_mgda_on_the_opposite_rows_of_a_large_hull_gives_zero():
    matrix = _structured_matrix("opposite", 200, torch.float64)
    result = MGDA()(matrix)
    assert result.norm() <= 1e-5 * matrix.norm(dim=1).max()


@mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_mgda_weights_of_a_non_finite_gramian_are_nan(value: float):
    matrix = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    gramian = matrix @ matrix.T
    gramian[1, 3] = value
    assert torch.isnan(MGDAWeighting()(gramian)).all()


def test_mgda_weights_of_a_huge_finite_gramian_are_finite():
    # The float32 sum of these entries overflows: the finiteness check must not take it for inf.
    matrix = torch.randn(64, 100, generator=torch.Generator().manual_seed(0))
    gramian = 1e37 * (matrix @ matrix.T / 100.0)
    weights = MGDAWeighting()(gramian)
    assert torch.isfinite(weights).all()
    assert torch.allclose(weights, MGDAWeighting()(gramian / 1e37), atol=1e-5)
