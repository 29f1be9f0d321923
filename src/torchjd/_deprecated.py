import functools
import warnings
from collections.abc import Callable
from typing import TypeVar

_F = TypeVar("_F", bound=Callable)


def deprecated_alias(function: _F, old_name: str, new_name: str) -> _F:
    """
    Returns ``function`` under its former name ``old_name``: the first call warns with a
    ``DeprecationWarning`` that names ``new_name``, the later ones do not.
    """

    warned = False

    @functools.wraps(function)
    def alias(*args, **kwargs):
        nonlocal warned
        if not warned:
            warned = True
            warnings.warn(
                f"`{old_name}` is deprecated and will be removed: use `{new_name}`, which takes the "
                f"same arguments.",
                DeprecationWarning,
                stacklevel=2,
            )
        return function(*args, **kwargs)

    alias.__qualname__ = alias.__name__ = old_name.rsplit(".", 1)[1]
    return alias  # type: ignore[return-value]
