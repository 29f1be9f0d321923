"""
Defining properties of the aggregation methods ported from torchjd 0.18 on degenerate inputs:
scale covariance where the method is covariant, m = 1, repeated, opposite and zero rows,
non-finite values (NaN out, state untouched) and half precision.
"""

import torch
from pytest import mark
from torch.testing import assert_close

from torchjd import aggregation as agg

# Methods with A(s J) = s A(J) for s > 0.
COVARIANT = {
    "AlignedMTL": lambda: agg.AlignedMTL(),
    "AlignedMTL-median": lambda: agg.AlignedMTL(scale_mode="median"),
    "Constant": lambda: agg.Constant(torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=torch.float64)),
    "GradVac": lambda: agg.GradVac(),
    "Krum": lambda: agg.Krum(1, n_selected=2),
    "MGDA": lambda: agg.MGDA(),
    "NashMTL": lambda: agg.NashMTL(4, max_norm=0.0),
    "PCD": lambda: agg.PCD(tau=0.3, eps=0.0),
    "TrimmedMean": lambda: agg.TrimmedMean(1),
}

# Every method ported from 0.18, built for 4 rows of a single estimate.
ALL = {
    **COVARIANT,
    "ExcessMTL": lambda: agg.ExcessMTL(),
    "FairGrad": lambda: agg.FairGrad(alpha=2.0),
    "GradDrop": lambda: agg.GradDrop(),
    "MoDo": lambda: agg.MoDo(num_estimates=1),
    "SDMGrad": lambda: agg.SDMGrad(num_estimates=1),
    "CRMOGM": lambda: agg.CRMOGM(agg.MGDAWeighting()),
}


def _matrix(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(4, 6, dtype=dtype)


@mark.parametrize("name", sorted(COVARIANT))
@mark.parametrize("scale", [1e-30, 1e-3, 1e30])
def test_scale_covariance(name: str, scale: float):
    matrix = _matrix()
    torch.manual_seed(1)
    expected = scale * COVARIANT[name]()(matrix)
    torch.manual_seed(1)
    assert_close(COVARIANT[name]()(scale * matrix), expected, rtol=1e-9, atol=0)


@mark.parametrize("alpha", [0.5, 1.0, 3.0])
def test_fairgrad_is_homogeneous_of_degree_one_minus_alpha_over_one_plus_alpha(alpha: float):
    # (G w)_i = w_i^(-1/α) with G -> s² G gives w -> s^(-2α/(α+1)) w.
    matrix, scale = _matrix(), 1e3
    degree = (1.0 - alpha) / (1.0 + alpha)
    result = agg.FairGrad(alpha)(scale * matrix)
    assert_close(result, scale**degree * agg.FairGrad(alpha)(matrix), rtol=1e-7, atol=0)


@mark.parametrize(
    "name", ["AlignedMTL", "GradVac", "MGDA", "NashMTL", "PCD", "GradDrop", "ExcessMTL", "MoDo"]
)
def test_a_single_row_is_returned_as_is(name: str):
    row = torch.tensor([[3.0, -4.0, 0.5]], dtype=torch.float64)
    make = {
        **ALL,
        "NashMTL": lambda: agg.NashMTL(1, max_norm=0.0),
        "GradVac": lambda: agg.GradVac(),
    }[name]
    assert_close(make()(row), row[0])


def test_mgda_on_opposite_duplicated_and_zero_rows():
    g = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    h = torch.tensor([0.5, -1.0, 3.0], dtype=torch.float64)
    zeros = torch.zeros(3, dtype=torch.float64)
    mgda = agg.MGDA()
    assert_close(mgda(torch.stack([g, -g])), zeros, atol=1e-15, rtol=0)  # 0 is in the hull
    assert_close(mgda(torch.stack([g, g, g])), g)
    assert_close(mgda(torch.stack([g, h, zeros])), zeros)  # a zero row is in the hull
    assert_close(mgda(torch.zeros(3, 3, dtype=torch.float64)), zeros)
    # Rank 1 with the same direction: the shortest row.
    assert_close(mgda(torch.stack([2 * g, g, 3 * g])), g)


@mark.parametrize("name", sorted(ALL))
@mark.parametrize(
    "rows",
    [
        [[1.0, 2.0, 0.5], [-1.0, -2.0, -0.5], [0.0, 1.0, 0.0], [2.0, 0.0, 1.0]],  # opposite rows
        [[1.0, 2.0, 0.5], [1.0, 2.0, 0.5], [0.0, 1.0, 0.0], [2.0, 0.0, 1.0]],  # repeated rows
        [[1.0, 2.0, 0.5], [2.0, 4.0, 1.0], [-1.0, -2.0, -0.5], [3.0, 6.0, 1.5]],  # rank 1
        [[1.0, 2.0, 0.5], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [2.0, 0.0, 1.0]],  # a zero row
        [[0.0, 0.0, 0.0]] * 4,  # all zero
    ],
)
def test_degenerate_matrices_give_finite_results(name: str, rows: list[list[float]]):
    matrix = torch.tensor(rows, dtype=torch.float64)
    assert torch.isfinite(ALL[name]()(matrix)).all()


@mark.parametrize("name", sorted(ALL))
@mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input_gives_nan_and_leaves_the_state_untouched(name: str, bad: float):
    matrix = _matrix()
    corrupted = matrix.clone()
    corrupted[1, 2] = bad
    module, fresh = ALL[name](), ALL[name]()
    torch.manual_seed(3)
    result = module(corrupted)
    # Non-finite (what GradScaler checks); a linear method like Constant keeps the exact values of
    # the columns that the bad value does not reach.
    assert not torch.isfinite(result).all()
    torch.manual_seed(4)
    after = module(matrix)
    torch.manual_seed(4)
    assert_close(after, fresh(matrix))


@mark.parametrize("name", sorted(ALL))
@mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(name: str, dtype: torch.dtype):
    matrix = _matrix(torch.float32).to(dtype)
    torch.manual_seed(5)
    result = ALL[name]()(matrix)
    torch.manual_seed(5)
    expected = ALL[name]()(matrix.float())
    assert result.dtype == dtype
    assert_close(result, expected.to(dtype))
