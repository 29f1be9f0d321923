"""What the aggregators and weightings do with their input before a method sees it."""

from collections.abc import Callable

import torch
from torch import Tensor

# Half-precision inputs are computed in float32: the methods' small linear systems and projections
# are not reliable (and often not implemented) in 16 bits.
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def check_matrix(stat: object, name: str, square: bool = False) -> Tensor:
    """Checks that ``stat`` is a floating-point matrix (square if ``square``) and returns it."""

    if not isinstance(stat, Tensor):
        raise TypeError(f"Parameter `{name}` should be a Tensor. Found `{type(stat).__name__}`.")
    if stat.dim() != 2:
        raise ValueError(
            f"Parameter `{name}` should be a matrix (2 dimensions). Found shape {tuple(stat.shape)}."
        )
    if not stat.is_floating_point():
        raise TypeError(
            f"Parameter `{name}` should have a floating-point dtype. Found {stat.dtype}; convert it "
            f"with `.float()`."
        )
    if square and stat.shape[0] != stat.shape[1]:
        raise ValueError(
            f"Parameter `{name}` should be a square matrix [m, m]: this weighting takes the Gramian "
            f"J @ J.T (PSD) of a matrix J, not J itself. Found shape {tuple(stat.shape)}."
        )
    return stat


def apply_in_working_precision(function: Callable[[Tensor], Tensor], stat: Tensor) -> Tensor:
    """
    Returns ``function(stat)``, computed in float32 and returned in ``stat``'s dtype when ``stat``
    is float16 or bfloat16.
    """

    if stat.dtype in _LOW_PRECISION:
        return function(stat.float()).to(stat.dtype)
    return function(stat)


def is_finite(stat: Tensor) -> bool:
    """
    Whether every element of ``stat`` is finite (neither NaN nor ±inf). A NaN or infinite element
    makes the sum non-finite, so a finite sum (one reduction, much cheaper than ``isfinite`` over
    every element) settles the common case; only a non-finite sum, which may also be an overflow
    of finite elements, takes the elementwise check.
    """
    if stat.dtype.is_floating_point and bool(torch.isfinite(stat.sum())):
        return True
    return bool(torch.isfinite(stat).all())
