"""
Checks that the public API of the published torchjd 0.18 (``tests/data/torchjd-0.18-api.txt``, read
with ``inspect`` from the installed 0.18.0) exists here with the same meaning of every call: each
name, each parameter's name, position, kind (positional-only, keyword-only) and default, each
settable property, each method, and the published bases. Our API may add parameters, always with a
default and after the published ones. The deliberate differences are listed in ``DIFFERENCES`` and
on the docs page "Coming from torchjd 0.18".
"""

import importlib
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parent / "data" / "torchjd-0.18-api.txt"

# name -> why its signature differs (each one is on the docs page "Coming from torchjd 0.18").
DIFFERENCES = {
    # The seed page of `jac` is binding: every parameter positional-or-keyword, `inputs=None`.
    "torchjd.autojac.jac": "signature of the seed page (a superset of 0.18's)",
}

# Parameters that 0.18 requires and that have a default here (a superset: 0.18 code passes them).
ADDED_DEFAULTS = {
    "torchjd.autogram.Engine": {"batch_dim"},  # 0, as in the SPEC
    "torchjd.scalarization.COSMOS": {"weights"},  # None: uniform
    "torchjd.scalarization.PBI": {"theta", "weights"},  # 5.0 (MOEA/D's usual value), uniform
    "torchjd.scalarization.STCH": {"mu"},  # 1.0
}


@dataclass
class Parameter:
    name: str
    kind: inspect._ParameterKind
    default: str | None  # None when there is no default


@dataclass
class Entry:
    module: str
    name: str
    is_class: bool
    parameters: list[Parameter]
    bases: list[str]
    properties: list[str] = field(default_factory=list)
    settable: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    call_methods: dict[str, list[Parameter]] = field(default_factory=dict)


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def _parse_parameters(text: str) -> list[Parameter]:
    parameters = []
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    raw = _split_top_level(text)
    if "/" in raw:
        kind = inspect.Parameter.POSITIONAL_ONLY
    for item in raw:
        if item == "/":
            kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
            continue
        if item == "*":
            kind = inspect.Parameter.KEYWORD_ONLY
            continue
        if item.startswith("**"):
            continue
        if item.startswith("*"):
            kind = inspect.Parameter.KEYWORD_ONLY
            continue
        name_and_annotation, _, default = item.partition(" = ")
        name = name_and_annotation.split(":")[0].strip()
        parameters.append(Parameter(name, kind, default.strip() if default else None))
    return parameters


def _signature_text(line: str) -> str:
    """The text between the first '(' after the name and its matching ')'."""
    start = line.index("(")
    depth = 0
    for index in range(start, len(line)):
        depth += line[index] == "("
        depth -= line[index] == ")"
        if depth == 0:
            return line[start + 1 : index]
    raise ValueError(line)


def read_reference() -> list[Entry]:
    entries: list[Entry] = []
    module = ""
    for line in REFERENCE.read_text().splitlines():
        if line.startswith("## "):
            module = line.split()[1]
        elif line.startswith(("class ", "def ")):
            is_class = line.startswith("class ")
            name = re.match(r"(?:class|def) (\w+)", line).group(1)
            bases = line.split("# bases:")[1].split(",") if "# bases:" in line else []
            entries.append(
                Entry(
                    module,
                    name,
                    is_class,
                    _parse_parameters(_signature_text(line)),
                    [base.strip() for base in bases],
                )
            )
        elif line.startswith("    properties:"):
            for part in line.strip().split(";"):
                key, _, values = part.strip().partition(":")
                names = [value.strip() for value in values.split(",")]
                if key == "properties":
                    entries[-1].properties = names
                elif key == "settable":
                    entries[-1].settable = names
        elif line.startswith("    methods:"):
            entries[-1].methods = [value.strip() for value in line.split(":")[1].split(",")]
        elif line.startswith(("    forward(", "    __call__(")):
            method = line.strip().split("(")[0]
            entries[-1].call_methods[method] = _parse_parameters(_signature_text(line))
    return entries


ENTRIES = read_reference()
IDS = [f"{entry.module}.{entry.name}" for entry in ENTRIES]


def _id(entry: Entry) -> str:
    return f"{entry.module}.{entry.name}"


def _ours(entry: Entry):
    return getattr(importlib.import_module(entry.module), entry.name)


def _default_text(value: object) -> str:
    if callable(value) and hasattr(value, "__name__"):
        return value.__name__
    return repr(value)


def _signature_parameters(obj) -> list[inspect.Parameter]:
    signature = inspect.signature(obj)
    return [
        p
        for p in signature.parameters.values()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]


def test_reference_is_read():
    assert len(ENTRIES) > 60
    assert {entry.module for entry in ENTRIES} == {
        "torchjd",
        "torchjd.aggregation",
        "torchjd.autogram",
        "torchjd.autojac",
        "torchjd.linalg",
        "torchjd.scalarization",
    }


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_published_name_is_public_here(entry: Entry):
    module = importlib.import_module(entry.module)
    assert entry.name in module.__all__
    assert inspect.isclass(getattr(module, entry.name)) == entry.is_class


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_signature_matches_the_published_one(entry: Entry):
    qualified = f"{entry.module}.{entry.name}"
    if qualified in DIFFERENCES or entry.parameters == []:
        return
    ours = _signature_parameters(_ours(entry))
    published = entry.parameters
    assert [p.name for p in ours[: len(published)]] == [p.name for p in published]
    for our, their in zip(ours, published):
        assert our.kind == their.kind, f"{our.name}: {our.kind} instead of {their.kind}"
        if their.default is None:
            has_default = our.default is not inspect.Parameter.empty
            assert has_default == (our.name in ADDED_DEFAULTS.get(qualified, set())), our.name
        else:
            assert _default_text(our.default) == their.default, our.name
    for extra in ours[len(published) :]:
        assert extra.default is not inspect.Parameter.empty, f"extra {extra.name} needs a default"


def _is_settable(attribute: object) -> bool:
    """Whether a class attribute is a property with a setter or another data descriptor."""
    if isinstance(attribute, property):
        return attribute.fset is not None
    return hasattr(type(attribute), "__set__")


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.properties or e.methods], ids=_id)
def test_properties_and_methods_exist(entry: Entry):
    cls = _ours(entry)
    for name in entry.properties:
        assert hasattr(inspect.getattr_static(cls, name), "__get__"), f"{name} should be a property"
    for name in entry.settable:
        assert _is_settable(inspect.getattr_static(cls, name)), f"{name} should be settable"
    for name in entry.methods:
        assert callable(getattr(cls, name)), name


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.call_methods], ids=_id)
def test_call_conventions_match(entry: Entry):
    cls = _ours(entry)
    for method, published in entry.call_methods.items():
        ours = _signature_parameters(getattr(cls, method))[1:]  # without self
        assert [p.kind for p in ours] == [p.kind for p in published], method
        keyword_names = [p.name for p in published if p.kind != inspect.Parameter.POSITIONAL_ONLY]
        assert [p.name for p in ours if p.kind != inspect.Parameter.POSITIONAL_ONLY] == keyword_names


_CHECKED_BASES = {
    "Stateful": "torchjd.Stateful",
    "WeightedAggregator": "torchjd.aggregation.WeightedAggregator",
    "GramianWeightedAggregator": "torchjd.aggregation.GramianWeightedAggregator",
    "Aggregator": "torchjd.aggregation.Aggregator",
    "Weighting": "torchjd.aggregation.Weighting",
    "Scalarizer": "torchjd.scalarization.Scalarizer",
    "DualConeProjector": "torchjd.linalg.DualConeProjector",
    "Matrix": "torchjd.linalg.Matrix",
}


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.is_class], ids=_id)
def test_published_bases_hold(entry: Entry):
    cls = _ours(entry)
    for base in entry.bases:
        if base in _CHECKED_BASES:
            module, _, name = _CHECKED_BASES[base].rpartition(".")
            assert issubclass(cls, getattr(importlib.import_module(module), name)), base
