"""Numerical kernels shared by the aggregators."""

from ._dual_cone import ActiveSetDualConeProjector, DualConeProjector, default_kkt_tolerance
from ._gramian import compute_gramian
from ._matrix import Matrix, PSDMatrix

__all__ = [
    "ActiveSetDualConeProjector",
    "DualConeProjector",
    "Matrix",
    "PSDMatrix",
    "compute_gramian",
    "default_kkt_tolerance",
]
