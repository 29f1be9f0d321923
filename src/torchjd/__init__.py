"""Jacobian descent for PyTorch."""

from torchjd import aggregation, autogram, autojac, linalg, scalarization

__all__ = ["aggregation", "autogram", "autojac", "linalg", "scalarization"]
__version__ = "0.1.0"
