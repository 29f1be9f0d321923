"""Minimal helpers to walk the tensors nested in a module's arguments and outputs."""

from collections.abc import Callable
from typing import Any

from torch import Tensor


def flatten_tensors(tree: Any) -> list[Tensor]:
    """Returns the tensors nested in ``tree`` (tuples, lists and dict values), depth first."""

    leaves: list[Tensor] = []
    _collect(tree, leaves)
    return leaves


def _collect(tree: Any, leaves: list[Tensor]) -> None:
    if isinstance(tree, Tensor):
        leaves.append(tree)
    elif isinstance(tree, (tuple, list)):
        for item in tree:
            _collect(item, leaves)
    elif isinstance(tree, dict):
        for item in tree.values():
            _collect(item, leaves)


def map_tensors(tree: Any, fn: Callable[[Tensor], Any]) -> Any:
    """Returns a copy of ``tree`` with every tensor ``t`` replaced by ``fn(t)``, same traversal order."""

    if isinstance(tree, Tensor):
        return fn(tree)
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # namedtuple
        return type(tree)(*(map_tensors(item, fn) for item in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(map_tensors(item, fn) for item in tree)
    if isinstance(tree, dict):
        return {key: map_tensors(value, fn) for key, value in tree.items()}
    return tree
