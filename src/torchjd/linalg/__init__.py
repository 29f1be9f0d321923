"""Numerical kernels shared by the aggregators."""

from ._dual_cone import ActiveSetDualConeProjector, DualConeProjector, default_kkt_tolerance
from ._gramian import compute_gramian

__all__ = [
    "ActiveSetDualConeProjector",
    "DualConeProjector",
    "compute_gramian",
    "default_kkt_tolerance",
]
