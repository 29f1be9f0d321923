"""Jacobian descent for PyTorch."""

from torchjd import aggregation, autogram, autojac, distributed, linalg, scalarization

__all__ = ["aggregation", "autogram", "autojac", "distributed", "linalg", "scalarization"]
__version__ = "0.1.0"
