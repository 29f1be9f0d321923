from collections.abc import Callable
from typing import Any


class Hyperparameter:
    """
    A hyper-parameter of an aggregator, weighting or scalarizer: a property whose every assignment
    (in ``__init__`` or later, e.g. ``aggregator.c = 1.0``) goes through ``check(name, value)``,
    which raises on an invalid value and returns the value to store. It takes effect on the next
    call.
    """

    def __init__(self, check: Callable[[str, Any], Any]):
        self._check = check

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name
        self._slot = f"_hyperparameter_{name}"

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return instance.__dict__[self._slot]

    def __set__(self, instance: object, value: Any) -> None:
        instance.__dict__[self._slot] = self._check(self._name, value)
