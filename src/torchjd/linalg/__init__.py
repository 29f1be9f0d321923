"""Numerical kernels shared by the aggregators."""

from ._gramian import compute_gramian

__all__ = ["compute_gramian"]
