"""Jacobian descent for PyTorch."""

from torchjd._stateful import Stateful
from torchjd import aggregation, autogram, autojac, distributed, linalg, scalarization
from torchjd._deprecated import deprecated_alias

# The entry points of the first torchjd versions, which lived at the top level.
backward = deprecated_alias(autojac.backward, "torchjd.backward", "torchjd.autojac.backward")
mtl_backward = deprecated_alias(
    autojac.mtl_backward, "torchjd.mtl_backward", "torchjd.autojac.mtl_backward"
)

__all__ = ["Stateful", "aggregation", "autogram", "autojac", "distributed", "linalg", "scalarization"]
__version__ = "0.19.0"
