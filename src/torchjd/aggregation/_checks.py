"""Checks of constructor parameters shared by the aggregators and weightings."""


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
