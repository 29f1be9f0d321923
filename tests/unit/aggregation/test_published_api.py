"""
The aggregation methods have the constructors of the published torchjd 0.18 (names, order,
defaults, kinds), and every hyper-parameter is a validated property that can be assigned on the
aggregator or its weighting and takes effect on the next call.
"""

import inspect

import torch
from pytest import mark, raises
from torch.testing import assert_close

from torchjd import aggregation as agg

_EMPTY = inspect.Parameter.empty

# (parameter names and defaults) as published in torchjd 0.18; `_EMPTY` means required.
PUBLISHED_SIGNATURES = {
    "AlignedMTL": [("pref_vector", None), ("scale_mode", "min")],
    "AlignedMTLWeighting": [("pref_vector", None), ("scale_mode", "min")],
    "CAGrad": [("c", _EMPTY), ("norm_eps", 0.0001)],
    "CAGradWeighting": [("c", _EMPTY), ("norm_eps", 0.0001)],
    "Constant": [("weights", _EMPTY)],
    "ConstantWeighting": [("weights", _EMPTY)],
    "CRMOGMWeighting": [("weighting", _EMPTY), ("alpha", 0.9), ("initial_weights", None)],
    "ExcessMTL": [("robust_step_size", 1.0), ("n_warmup_steps", 0)],
    "ExcessMTLWeighting": [("robust_step_size", 1.0), ("n_warmup_steps", 0)],
    "FairGrad": [("alpha", _EMPTY), ("max_iters", None)],
    "FairGradWeighting": [("alpha", _EMPTY), ("max_iters", None)],
    "GradDrop": [("f", "_identity"), ("leak", None)],
    "GradVac": [("beta", 0.5), ("eps", 1e-08)],
    "GradVacWeighting": [("beta", 0.5), ("eps", 1e-08)],
    "IMTLG": [],
    "IMTLGWeighting": [],
    "Krum": [("n_byzantine", _EMPTY), ("n_selected", 1)],
    "KrumWeighting": [("n_byzantine", _EMPTY), ("n_selected", 1)],
    "MGDA": [("epsilon", 0.001), ("max_iters", 100)],
    "MGDAWeighting": [("epsilon", 0.001), ("max_iters", 100)],
    "MoDoWeighting": [("gamma", 0.1), ("rho", 0.1)],
    "NashMTL": [
        ("n_tasks", _EMPTY),
        ("max_norm", 1.0),
        ("update_weights_every", 1),
        ("optim_niter", 20),
    ],
    "PCD": [("tau", 0.02), ("beta", 0.999), ("eps", 1e-08)],
    "PCDWeighting": [("tau", 0.02), ("beta", 0.999), ("eps", 1e-08)],
    "PCGrad": [],
    "PCGradWeighting": [],
    "SDMGradWeighting": [
        ("lr", 10.0),
        ("momentum", 0.5),
        ("n_iter", 20),
        ("lambda_", 0.3),
        ("pref_vector", None),
    ],
    "TrimmedMean": [("trim_number", _EMPTY)],
}

# Published base classes: which methods are Gramian-based.
GRAMIAN_BASED = {
    "AlignedMTL", "CAGrad", "FairGrad", "GradVac", "IMTLG", "Krum", "MGDA", "PCD", "PCGrad",
}  # fmt: skip
MATRIX_BASED = {"Constant", "ExcessMTL", "NashMTL"}
GRAMIAN_WEIGHTINGS = {
    "AlignedMTLWeighting", "CAGradWeighting", "FairGradWeighting", "GradVacWeighting",
    "IMTLGWeighting", "KrumWeighting", "MGDAWeighting", "PCDWeighting", "PCGradWeighting",
}  # fmt: skip
MATRIX_WEIGHTINGS = {"ConstantWeighting", "ExcessMTLWeighting", "MoDoWeighting", "SDMGradWeighting"}


@mark.parametrize("name", sorted(PUBLISHED_SIGNATURES))
def test_constructor_has_the_published_signature(name: str):
    parameters = list(inspect.signature(getattr(agg, name)).parameters.values())
    found = []
    for parameter in parameters:
        assert parameter.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD, parameter
        default = parameter.default
        if callable(default) and default is not _EMPTY:
            default = default.__name__  # GradDrop's f: the identity function `_identity`
        found.append((parameter.name, default))
    assert found == PUBLISHED_SIGNATURES[name]


@mark.parametrize("name", sorted(GRAMIAN_BASED | MATRIX_BASED))
def test_aggregators_have_the_published_base(name: str):
    cls = getattr(agg, name)
    assert issubclass(cls, agg.WeightedAggregator)
    assert issubclass(cls, agg.GramianWeightedAggregator) == (name in GRAMIAN_BASED)


@mark.parametrize("name", sorted(GRAMIAN_WEIGHTINGS | MATRIX_WEIGHTINGS))
def test_weightings_take_the_published_statistic(name: str):
    from torchjd.aggregation._weighting_bases import GramianWeighting, MatrixWeighting

    cls = getattr(agg, name)
    expected = GramianWeighting if name in GRAMIAN_WEIGHTINGS else MatrixWeighting
    assert issubclass(cls, expected)


def _matrix() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(5, 7, dtype=torch.float64)


# (factory, attribute, a new valid value, an invalid value, the error it raises)
PROPERTIES = [
    (lambda: agg.AlignedMTL(), "pref_vector", torch.arange(1.0, 6.0), torch.ones(2, 2), ValueError),
    (lambda: agg.AlignedMTL(), "scale_mode", "rmse", "max", ValueError),
    (lambda: agg.CAGrad(0.5), "c", 2.0, -1.0, ValueError),
    (lambda: agg.CAGrad(0.5), "norm_eps", 0.0, "1", TypeError),
    (lambda: agg.Constant(torch.ones(5)), "weights", torch.arange(5.0), torch.ones(5, 1), ValueError),
    (lambda: agg.ExcessMTL(), "robust_step_size", 0.5, 0.0, ValueError),
    (lambda: agg.ExcessMTL(), "n_warmup_steps", 2, -1, ValueError),
    (lambda: agg.FairGrad(1.0), "alpha", 2.0, -1.0, ValueError),
    (lambda: agg.FairGrad(1.0), "max_iters", 3, 0, ValueError),
    (lambda: agg.GradDrop(), "leak", torch.full((5,), 0.5), torch.full((5,), 2.0), ValueError),
    (lambda: agg.GradDrop(), "f", torch.sigmoid, 3, TypeError),
    (lambda: agg.GradVac(), "beta", 0.1, 1.5, ValueError),
    (lambda: agg.GradVac(), "eps", 0.0, -1.0, ValueError),
    (lambda: agg.Krum(1), "n_byzantine", 2, -1, ValueError),
    (lambda: agg.Krum(1), "n_selected", 3, 0, ValueError),
    (lambda: agg.MGDA(), "epsilon", 0.1, -0.1, ValueError),
    (lambda: agg.MGDA(), "max_iters", 1, 0, ValueError),
    (lambda: agg.NashMTL(5), "max_norm", 0.0, -1.0, ValueError),
    (lambda: agg.NashMTL(5), "optim_niter", 3, 0, ValueError),
    (lambda: agg.NashMTL(5), "update_weights_every", 2, 1.5, TypeError),
    (lambda: agg.NashMTL(5), "n_tasks", 4, 0, ValueError),
    (lambda: agg.PCD(), "tau", 0.5, 1.5, ValueError),
    (lambda: agg.PCD(), "beta", 0.5, 1.0, ValueError),
    (lambda: agg.PCD(), "eps", 0.0, -1.0, ValueError),
    (lambda: agg.TrimmedMean(1), "trim_number", 2, -1, ValueError),
    (lambda: agg.CRMOGMWeighting(agg.MeanWeighting()), "alpha", 0.5, 2.0, ValueError),
    (lambda: agg.MoDoWeighting(), "gamma", 0.5, 0.0, ValueError),
    (lambda: agg.MoDoWeighting(), "rho", 0.0, -0.1, ValueError),
    (lambda: agg.SDMGradWeighting(), "lr", 1.0, 0.0, ValueError),
    (lambda: agg.SDMGradWeighting(), "momentum", 0.0, 1.0, ValueError),
    (lambda: agg.SDMGradWeighting(), "n_iter", 2, 0, ValueError),
    (lambda: agg.SDMGradWeighting(), "lambda_", 1.0, -1.0, ValueError),
]


def _weighting_of(module: torch.nn.Module) -> torch.nn.Module | None:
    if isinstance(module, agg.GramianWeightedAggregator):
        return module.gramian_weighting
    if isinstance(module, agg.WeightedAggregator):
        return module.weighting
    return None


@mark.parametrize("make,name,value,invalid,error", PROPERTIES)
def test_hyperparameter_is_settable_on_the_aggregator_and_its_weighting(
    make, name, value, invalid, error
):
    module = make()
    setattr(module, name, value)
    if isinstance(value, torch.Tensor):
        assert torch.equal(getattr(module, name), value)
    else:
        assert getattr(module, name) == value
    weighting = _weighting_of(module)
    if weighting is not None and hasattr(weighting, name):
        # The aggregator's hyper-parameter is its weighting's.
        assert getattr(weighting, name) is getattr(module, name)
    with raises(error, match=f"`{name}`"):
        setattr(module, name, invalid)


# (factory, attribute, new value, factory of the expected module), for stateless methods: after the
# assignment, the module computes what a new module built with that value computes.
TAKES_EFFECT = [
    (lambda: agg.AlignedMTL(), "scale_mode", "median", lambda: agg.AlignedMTL(scale_mode="median")),
    (
        lambda: agg.AlignedMTL(),
        "pref_vector",
        torch.arange(1.0, 6.0, dtype=torch.float64),
        lambda: agg.AlignedMTL(pref_vector=torch.arange(1.0, 6.0, dtype=torch.float64)),
    ),
    (lambda: agg.CAGrad(0.5), "c", 2.0, lambda: agg.CAGrad(2.0)),
    (lambda: agg.FairGrad(1.0), "alpha", 3.0, lambda: agg.FairGrad(3.0)),
    (lambda: agg.Krum(1), "n_selected", 3, lambda: agg.Krum(1, n_selected=3)),
    (lambda: agg.Krum(1), "n_byzantine", 2, lambda: agg.Krum(2)),
    (lambda: agg.TrimmedMean(1), "trim_number", 2, lambda: agg.TrimmedMean(2)),
    (lambda: agg.NashMTL(5), "max_norm", 0.0, lambda: agg.NashMTL(5, max_norm=0.0)),
]


@mark.parametrize("make,name,value,make_expected", TAKES_EFFECT)
def test_assigned_hyperparameter_takes_effect_on_the_next_call(make, name, value, make_expected):
    matrix = _matrix()
    module = make()
    before = module(matrix)
    setattr(module, name, value)
    expected = make_expected()(matrix)
    assert_close(module(matrix), expected)
    assert not torch.allclose(before, expected)


@mark.parametrize("make", [lambda: agg.GradVac(beta=0.5), lambda: agg.PCD(tau=0.1, beta=0.5)])
def test_assigned_hyperparameter_of_a_stateful_method_takes_effect_on_the_next_call(make):
    first, second = _matrix(), _matrix().flip(0)
    module, expected = make(), make()
    torch.manual_seed(1)
    module(first)
    torch.manual_seed(1)
    expected(first)
    module.beta = 0.0
    expected.gramian_weighting.beta = 0.0
    torch.manual_seed(2)
    result = module(second)
    torch.manual_seed(2)
    assert_close(result, expected(second))
    assert module.gramian_weighting.beta == 0.0
