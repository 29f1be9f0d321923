"""
Linear-algebra kernels of the aggregators: the Gramian of a matrix and the projection onto the
dual cone of its rows (the inner problem of UPGrad and DualProj), behind the
:class:`DualConeProjector` interface.
"""

from ._active_set import ActiveSetDualConeProjector, default_kkt_tolerance
from ._gramian import compute_gramian
from ._matrix import Matrix, PSDMatrix
from ._projector import DualConeProjector
from ._quadprog import QuadprogProjector

__all__ = [
    "ActiveSetDualConeProjector",
    "DualConeProjector",
    "Matrix",
    "PSDMatrix",
    "QuadprogProjector",
    "compute_gramian",
    "default_kkt_tolerance",
]
