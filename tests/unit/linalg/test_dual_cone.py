import pytest
import torch
from torch import Tensor
from unit.linalg._dual_cone_reference import brute_force_projection, kkt_violations

from torchjd.aggregation import DualProj, UPGrad
from torchjd.linalg import (
    ActiveSetDualConeProjector,
    DualConeProjector,
    QuadprogProjector,
    default_kkt_tolerance,
)

DTYPES = [torch.float32, torch.float64]


def random_gramian(m: int, rank: int, dtype: torch.dtype, generator: torch.Generator) -> Tensor:
    matrix = torch.randn(m, max(rank, 1), generator=generator, dtype=torch.float64)
    if rank == 0:
        matrix = matrix * 0.0
    # Rows of very different norms, as in real Jacobians.
    matrix = matrix * torch.exp(torch.randn(m, 1, generator=generator, dtype=torch.float64))
    return (matrix @ matrix.T).to(dtype)


def assert_kkt(gramian: Tensor, u: Tensor, v: Tensor, factor: float = 1.0) -> None:
    tolerance = factor * default_kkt_tolerance(v.dtype)
    feasible, negative, complementarity = kkt_violations(gramian, u, v)
    assert feasible, "v >= u is violated"
    assert negative <= tolerance, f"G v >= 0 violated by {negative} (tolerance {tolerance})"
    assert complementarity <= tolerance, f"complementarity violated by {complementarity}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 8, 16, 33, 64])
def test_projection_satisfies_kkt_on_random_gramians(m: int, dtype: torch.dtype):
    generator = torch.Generator().manual_seed(m)
    projector = ActiveSetDualConeProjector()
    for rank in sorted({1, max(m // 2, 1), m, 2 * m}):
        gramian = random_gramian(m, rank, dtype, generator)
        u = torch.cat([torch.eye(m, dtype=dtype), torch.randn(7, m, generator=generator).to(dtype)])
        v = projector(u, gramian)
        assert v.dtype == dtype and v.shape == u.shape
        assert_kkt(gramian, u, v)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [2, 3, 4, 5, 6])
def test_projection_matches_brute_force_on_definite_gramians(m: int, dtype: torch.dtype):
    generator = torch.Generator().manual_seed(100 + m)
    projector = ActiveSetDualConeProjector()
    for _ in range(4):
        gramian = random_gramian(m, m + 2, torch.float64, generator)
        u = torch.cat(
            [
                torch.eye(m, dtype=torch.float64),
                torch.randn(4, m, generator=generator, dtype=torch.float64),
            ]
        )
        v = projector(u.to(dtype), gramian.to(dtype))
        for u_row, v_row in zip(u, v):
            expected, _ = brute_force_projection(gramian, u_row)
            scale = float(expected.abs().max()) + 1.0
            rtol = 1e-3 if dtype == torch.float32 else 1e-7
            assert (
                float((v_row.double() - expected) @ gramian @ (v_row.double() - expected)) ** 0.5
                <= rtol * scale * float(gramian.diagonal().max()) ** 0.5
            )


@pytest.mark.parametrize("m", [3, 5, 6])
def test_projection_reaches_the_brute_force_optimum_on_singular_gramians(m: int):
    # Minimizers are not unique when G is singular, but the optimal value is.
    generator = torch.Generator().manual_seed(200 + m)
    projector = ActiveSetDualConeProjector()
    for rank in [1, 2]:
        gramian = random_gramian(m, rank, torch.float64, generator)
        u = torch.randn(5, m, generator=generator, dtype=torch.float64)
        v = projector(u, gramian)
        for u_row, v_row in zip(u, v):
            _, optimum = brute_force_projection(gramian, u_row)
            value = float(v_row @ gramian @ v_row)
            scale = (
                float(gramian.diagonal().max())
                * max(float(v_row.abs().max()), float(u_row.abs().max())) ** 2
            )
            assert value <= optimum + 1e-6 * scale


@pytest.mark.parametrize("dtype", DTYPES)
def test_projection_is_exact_on_two_rows_by_hand(dtype: torch.dtype):
    # G = [[4, -2], [-2, 4]], u = e_1: v_2 minimizes 4 - 4 v_2 + 4 v_2², so v_2 = 1/2.
    gramian = torch.tensor([[4.0, -2.0], [-2.0, 4.0]], dtype=dtype)
    v = ActiveSetDualConeProjector()(torch.eye(2, dtype=dtype), gramian)
    torch.testing.assert_close(v, torch.tensor([[1.0, 0.5], [0.5, 1.0]], dtype=dtype))


def test_projection_keeps_u_when_nothing_conflicts():
    gramian = torch.tensor([[2.0, 1.0, 0.5], [1.0, 2.0, 0.0], [0.5, 0.0, 1.0]], dtype=torch.float64)
    u = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(ActiveSetDualConeProjector()(u, gramian), u)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 2, 3, 6, 24])
@pytest.mark.parametrize("scale", [0.0, 1e-30, 1.0, 1e30])
def test_projection_handles_zero_tiny_and_huge_gramians(m: int, scale: float, dtype: torch.dtype):
    generator = torch.Generator().manual_seed(m)
    base = random_gramian(m, max(m // 2, 1), torch.float64, generator)
    base = base / base.diagonal().max()
    gramian = (base * scale).to(dtype)
    u = torch.cat([torch.eye(m, dtype=dtype), torch.randn(3, m, generator=generator).to(dtype)])
    v = ActiveSetDualConeProjector()(u, gramian)
    assert torch.isfinite(v).all()
    assert_kkt(gramian, u, v)
    if scale > 0.0:
        # The problem does not depend on the magnitude of G.
        v_unit = ActiveSetDualConeProjector()(u, base.to(dtype))
        assert_kkt(base, u, v_unit)
        value, value_unit = (
            float(torch.einsum("bi,ij,bj->", x.double(), base, x.double())) for x in (v, v_unit)
        )
        assert abs(value - value_unit) <= 1e-3 * max(value_unit, 1.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [2, 3, 7, 64])
def test_projection_handles_duplicated_and_opposite_rows(m: int, dtype: torch.dtype):
    generator = torch.Generator().manual_seed(m)
    rows = torch.randn(m, 5, generator=generator, dtype=torch.float64)
    rows[1] = rows[0]  # duplicated
    rows[-1] = -rows[0]  # opposite
    gramian = (rows @ rows.T).to(dtype)
    u = torch.cat([torch.eye(m, dtype=dtype), torch.randn(3, m, generator=generator).to(dtype)])
    v = ActiveSetDualConeProjector()(u, gramian)
    assert_kkt(gramian, u, v)


def test_projection_on_opposite_pair_by_hand():
    # G = [[1, -1], [-1, 1]], u = e_1: any v = (t, t), t >= 1, reaches v^T G v = 0.
    gramian = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    v = ActiveSetDualConeProjector()(torch.tensor([1.0, 0.0], dtype=torch.float64), gramian)
    assert float(v[0]) >= 1.0
    assert abs(float(v[0] - v[1])) <= 1e-6


def test_projection_of_one_row_is_the_positive_part():
    projector = ActiveSetDualConeProjector()
    u = torch.tensor([[-2.0], [0.0], [3.0]])
    for g in [0.0, 1e-30, 5.0]:
        torch.testing.assert_close(
            projector(u, torch.tensor([[g]])), torch.tensor([[0.0], [0.0], [3.0]])
        )


def test_projection_handles_512_rows():
    generator = torch.Generator().manual_seed(512)
    m = 512
    rows = torch.randn(m, 2000, generator=generator)
    rows[1] = rows[0]
    rows[2] = -rows[3]
    gramian = rows @ rows.T
    u = torch.eye(m)
    v = ActiveSetDualConeProjector()(u, gramian)
    assert_kkt(gramian, u, v)


def _singular_rows(kind: str, generator: torch.Generator) -> Tensor:
    if kind == "m > n":
        return torch.randn(300, 30, generator=generator, dtype=torch.float64)
    if kind == "slightly more rows than columns":
        return torch.randn(80, 60, generator=generator, dtype=torch.float64)
    if kind == "sum to zero":
        rows = torch.randn(300, 400, generator=generator, dtype=torch.float64)
        rows[-1] = -rows[:-1].sum(dim=0)
        return rows
    rows = torch.randn(300, 500, generator=generator, dtype=torch.float64)
    rows[150:] = rows[:150]  # every row twice
    return rows


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "kind", ["m > n", "slightly more rows than columns", "sum to zero", "duplicated"]
)
def test_projection_is_exact_on_singular_gramians_at_scale(kind: str, dtype: torch.dtype):
    # These took minutes before the projection worked in the space of the Gramian's rank.
    generator = torch.Generator().manual_seed(300)
    rows = _singular_rows(kind, generator)
    gramian = (rows @ rows.T).to(dtype)
    m = gramian.shape[0]
    u = torch.cat([torch.eye(m), torch.randn(3, m, generator=generator)]).to(dtype)
    v = ActiveSetDualConeProjector()(u, gramian)
    if dtype == torch.float64:
        assert_kkt(gramian, u, v)
    else:
        # A float32 Gramian is solved at float32 precision: no conflict with the exact rows beyond
        # that precision.
        feasible, negative, _ = kkt_violations(rows @ rows.T, u, v)
        assert feasible and negative <= 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
def test_projection_accepts_any_batch_shape(dtype: torch.dtype):
    generator = torch.Generator().manual_seed(0)
    gramian = random_gramian(4, 4, dtype, generator)
    u = torch.randn(2, 3, 4, generator=generator).to(dtype)
    v = ActiveSetDualConeProjector()(u, gramian)
    assert v.shape == (2, 3, 4)
    torch.testing.assert_close(v[1, 2], ActiveSetDualConeProjector()(u[1, 2], gramian))
    assert ActiveSetDualConeProjector()(torch.zeros(0, 4, dtype=dtype), gramian).shape == (0, 4)


def test_projection_is_positively_homogeneous_in_u():
    generator = torch.Generator().manual_seed(3)
    gramian = random_gramian(6, 6, torch.float64, generator)
    u = torch.randn(6, 6, generator=generator, dtype=torch.float64)
    projector = ActiveSetDualConeProjector()
    torch.testing.assert_close(projector(7.0 * u, gramian), 7.0 * projector(u, gramian))


def test_projection_returns_the_promoted_dtype_on_the_device_of_g():
    gramian = torch.eye(3, dtype=torch.float64)
    u = torch.eye(3, dtype=torch.float32)
    v = ActiveSetDualConeProjector()(u, gramian)
    assert v.dtype == torch.float64 and v.device == gramian.device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [2, 3, 40, 256])
def test_projection_runs_on_cuda(m: int, dtype: torch.dtype):
    generator = torch.Generator().manual_seed(m)
    gramian = random_gramian(m, max(m // 2, 1), torch.float64, generator)
    u = torch.eye(m, dtype=torch.float64)
    v = ActiveSetDualConeProjector()(u.to("cuda", dtype), gramian.to("cuda", dtype))
    assert v.device.type == "cuda" and v.dtype == dtype
    assert_kkt(gramian, u, v.cpu())


def test_custom_tolerance_is_validated():
    with pytest.raises(ValueError, match="tolerance"):
        ActiveSetDualConeProjector(tolerance=0.0)
    with pytest.raises(TypeError, match="tolerance"):
        ActiveSetDualConeProjector(tolerance="1e-3")  # type: ignore[arg-type]
    assert repr(ActiveSetDualConeProjector(1e-5)) == "ActiveSetDualConeProjector(tolerance=1e-05)"


@pytest.mark.parametrize(
    ["gramian", "u"],
    [
        (torch.eye(3), torch.ones(2)),
        (torch.ones(2, 3), torch.ones(3)),
        (torch.ones(3), torch.ones(3)),
    ],
)
def test_projection_rejects_mismatched_shapes(gramian: Tensor, u: Tensor):
    with pytest.raises(ValueError):
        ActiveSetDualConeProjector()(u, gramian)


def test_a_projector_written_for_0_18_works_with_upgrad_and_dualproj():
    # torchjd 0.18's interface: subclass DualConeProjector and implement __call__(self, U, G).
    calls = []

    class ExactBySearch(DualConeProjector):
        def __call__(self, U: Tensor, G: Tensor) -> Tensor:
            calls.append((tuple(U.shape), tuple(G.shape)))
            rows = [brute_force_projection(G, u)[0] for u in U.reshape(-1, G.shape[0])]
            return torch.stack(rows).reshape(U.shape).to(G.dtype)

    rows = [[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0], [1.0, -3.0, 0.5]]
    matrix = torch.tensor(rows, dtype=torch.float64)
    gramian = matrix @ matrix.T
    bounds = torch.eye(3, dtype=torch.float64) / 3
    expected_upgrad = sum(brute_force_projection(gramian, u)[0] for u in bounds)
    expected_dualproj = brute_force_projection(gramian, bounds.sum(dim=0))[0]
    torch.testing.assert_close(UPGrad(projector=ExactBySearch())(matrix), expected_upgrad @ matrix)
    torch.testing.assert_close(
        DualProj(projector=ExactBySearch())(matrix), expected_dualproj @ matrix
    )
    assert calls == [((3, 3), (3, 3)), ((3,), (3, 3))]
    with pytest.raises(TypeError):
        DualConeProjector()  # type: ignore[abstract]


def test_projectors_reject_integer_inputs_and_name_them():
    for projector in [ActiveSetDualConeProjector(), QuadprogProjector()]:
        with pytest.raises(TypeError, match="`U`"):
            projector(torch.eye(3, dtype=torch.int64), torch.eye(3))
        with pytest.raises(TypeError, match="`G`"):
            projector(torch.eye(3), torch.eye(3, dtype=torch.int32))
        with pytest.raises(TypeError, match="`weights`"):
            projector.sum_of_basis_projections(torch.ones(3, dtype=torch.int64), torch.eye(3))


@pytest.mark.parametrize("m", [1, 2, 3, 5, 8, 20])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_projectors_return_nan_on_non_finite_inputs(m: int, bad: float):
    generator = torch.Generator().manual_seed(m)
    gramian = random_gramian(m, m, torch.float64, generator)
    u = torch.eye(m, dtype=torch.float64)
    for projector in [ActiveSetDualConeProjector(), QuadprogProjector()]:
        bad_gramian = gramian.clone()
        bad_gramian[0, 0] = bad
        bad_u = u.clone()
        bad_u[-1, 0] = bad
        assert torch.isnan(projector(u, bad_gramian)).all()
        assert torch.isnan(projector(bad_u, gramian)).all()
        assert torch.isnan(projector.sum_of_basis_projections(u[0], bad_gramian)).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("m", [2, 3, 7, 20])
def test_projectors_accept_half_precision(m: int, dtype: torch.dtype):
    generator = torch.Generator().manual_seed(m)
    gramian = random_gramian(m, m, torch.float64, generator)
    gramian = (gramian / gramian.diagonal().max()).to(dtype)
    u = torch.eye(m, dtype=dtype)
    for projector in [ActiveSetDualConeProjector(), QuadprogProjector()]:
        v = projector(u, gramian)
        assert v.dtype == dtype and v.shape == u.shape and bool(torch.isfinite(v).all())
    # Exact for the 16-bit Gramian, up to the rounding of v to 16 bits.
    v = ActiveSetDualConeProjector()(u, gramian)
    feasible, negative, _ = kkt_violations(gramian, u, v)
    assert feasible and negative <= 2e-2
