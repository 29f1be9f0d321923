"""Jacobian descent for PyTorch."""

from torchjd._stateful import Stateful
from torchjd import aggregation, autogram, autojac, distributed, linalg, scalarization

__all__ = ["Stateful", "aggregation", "autogram", "autojac", "distributed", "linalg", "scalarization"]
__version__ = "0.19.0"
