"""
Checks of constructor parameters shared by the aggregators and weightings, and the two descriptors
that make every hyper-parameter a validated, settable property.
"""

from collections.abc import Callable
from numbers import Real
from typing import Any

from torch import Tensor

from torchjd._hyperparameter import Hyperparameter


def check_int(value: int, name: str, minimum: int) -> None:
    """Checks that ``value`` is an int (not a bool) of at least ``minimum``."""

    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Parameter `{name}` should be an int. Found `{type(value).__name__}`.")
    if value < minimum:
        raise ValueError(f"Parameter `{name}` should be at least {minimum}. Found `{value}`.")


def check_non_negative_float(value: float, name: str) -> None:
    """Checks that ``value`` is a finite real number (not a bool) that is at least 0."""

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Parameter `{name}` should be a float. Found `{type(value).__name__}`.")
    if not value >= 0.0 or value == float("inf"):
        raise ValueError(
            f"Parameter `{name}` should be a finite non-negative float. Found `{value}`."
        )


def real_in(
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> Callable[[str, object], float]:
    """Returns a check that a value is a real number in the interval and gives it as a float."""

    def check(name: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, Real):
            raise TypeError(
                f"Parameter `{name}` should be a real number. Found `{type(value).__name__}`."
            )
        value = float(value)
        too_low = low is not None and (value < low if low_inclusive else value <= low)
        too_high = high is not None and (value > high if high_inclusive else value >= high)
        if too_low or too_high or value != value or (high is None and value == float("inf")):
            left = "[" if low_inclusive else "("
            right = "]" if high_inclusive and high is not None else ")"
            low_str = "-inf" if low is None else f"{low}"
            high_str = "inf" if high is None else f"{high}"
            raise ValueError(
                f"Parameter `{name}` should be in {left}{low_str}, {high_str}{right}. Found "
                f"`{value}`."
            )
        return value

    return check


def int_at_least(minimum: int) -> Callable[[str, object], int]:
    """Returns a check that a value is an int (not a bool) of at least ``minimum``."""

    def check(name: str, value: object) -> int:
        check_int(value, name, minimum)  # type: ignore[arg-type]
        return value  # type: ignore[return-value]

    return check


def optional_vector(name: str, value: object) -> Tensor | None:
    """Checks that ``value`` is ``None`` or a finite floating-point vector (1 dimension)."""

    if value is None:
        return None
    if not isinstance(value, Tensor):
        raise TypeError(
            f"Parameter `{name}` should be a Tensor or None. Found `{type(value).__name__}`."
        )
    if value.dim() != 1:
        raise ValueError(
            f"Parameter `{name}` should be a vector (1 dimension). Found shape "
            f"{tuple(value.shape)}."
        )
    if not value.is_floating_point() or not bool(value.isfinite().all()):
        raise ValueError(f"Parameter `{name}` should hold finite floating-point values.")
    return value


class Delegated:
    """
    A hyper-parameter of an aggregator that is the one of the same name of its weighting
    (``"weighting"`` or ``"gramian_weighting"``): reading and assigning it reads and assigns the
    weighting's.
    """

    def __init__(self, weighting: str = "gramian_weighting"):
        self._weighting = weighting

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return getattr(getattr(instance, self._weighting), self._name)

    def __set__(self, instance: object, value: Any) -> None:
        setattr(getattr(instance, self._weighting), self._name, value)
