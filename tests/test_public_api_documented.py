"""
Checks that every public name of torchjd is documented: it has a docstring of its own, and a page
of docs/ documents it, with an autodoc directive (``.. autoclass:: torchjd.aggregation.UPGrad``,
or the MyST form ``{autoclass} torchjd.aggregation.UPGrad``) or a heading that contains its fully
qualified name. The public names are those listed in the ``__all__`` of torchjd and of each of
its public subpackages.
"""

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

from pytest import mark

import torchjd

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"

_DIRECTIVE = re.compile(
    r"(?:\.\.\s+|\{)auto(?:module|class|function|exception|data|method|attribute)(?:::|\})\s*"
    r"(?P<target>[\w.]+)"
)
_HEADING = re.compile(r"^#{1,6}\s+(?P<text>.*)$", re.MULTILINE)
_QUALIFIED_NAME = re.compile(r"torchjd(?:\.\w+)+")


def public_packages() -> list[str]:
    """Returns torchjd and its subpackages whose names do not start with an underscore."""

    names = ["torchjd"]
    for module in pkgutil.iter_modules(torchjd.__path__, prefix="torchjd."):
        if module.ispkg and not module.name.rsplit(".", 1)[1].startswith("_"):
            names.append(module.name)
    return names


def public_names() -> list[str]:
    """Returns the fully qualified public names: each package, and each entry of its ``__all__``."""

    names = []
    for package_name in public_packages():
        package = importlib.import_module(package_name)
        if package_name != "torchjd":
            names.append(package_name)
        names.extend(f"{package_name}.{name}" for name in getattr(package, "__all__", []))
    return sorted(set(names))


def documented_names(docs_dir: Path = DOCS_DIR) -> set[str]:
    """Returns the fully qualified names that an autodoc directive or a heading of docs/ names."""

    names: set[str] = set()
    for page in docs_dir.rglob("*.md"):
        text = page.read_text(encoding="utf-8")
        names.update(match["target"] for match in _DIRECTIVE.finditer(text))
        for heading in _HEADING.finditer(text):
            names.update(_QUALIFIED_NAME.findall(heading["text"]))
    return names


def resolve(qualified_name: str) -> object:
    module_name, _, attribute = qualified_name.rpartition(".")
    module = importlib.import_module(module_name)
    return getattr(module, attribute)


def own_docstring(obj: object) -> str:
    """Returns the docstring written for ``obj`` itself (a class does not inherit its parent's)."""

    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    return (doc or "").strip()


PUBLIC_NAMES = public_names()


def test_public_packages_are_found():
    assert {"torchjd.aggregation", "torchjd.autojac", "torchjd.autogram"} <= set(PUBLIC_NAMES)
    assert "torchjd.autojac.jac" in PUBLIC_NAMES


@mark.parametrize("qualified_name", PUBLIC_NAMES)
def test_public_name_has_a_docstring(qualified_name: str):
    assert own_docstring(resolve(qualified_name)), f"`{qualified_name}` has no docstring."


@mark.parametrize("qualified_name", PUBLIC_NAMES)
def test_public_name_has_a_docs_entry(qualified_name: str):
    assert qualified_name in documented_names(), (
        f"`{qualified_name}` is public but no page of docs/ documents it: add "
        f"`.. autoclass:: {qualified_name}` (or autofunction) to the API page of its package."
    )


def test_documented_names_reads_directives_and_headings(tmp_path: Path):
    (tmp_path / "page.md").write_text(
        "# `torchjd.linalg`\n"
        "```{eval-rst}\n.. autoclass:: torchjd.aggregation.UPGrad\n   :members:\n```\n"
        "```{autofunction} torchjd.autojac.jac\n```\n"
        "Text that mentions torchjd.autojac.backward is not an entry.\n"
    )
    assert documented_names(tmp_path) == {
        "torchjd.linalg",
        "torchjd.aggregation.UPGrad",
        "torchjd.autojac.jac",
    }
