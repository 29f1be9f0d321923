"""
Scalarizers turn a tensor of loss values into one scalar to call ``.backward()`` on.

They only need the values of the losses (never their gradients), so a training step costs one
ordinary backward pass. To combine the per-objective gradients instead, use an aggregator of
:mod:`torchjd.aggregation`.
"""

from ._constant import Constant
from ._cosmos import COSMOS
from ._dwa import DWA
from ._famo import FAMO
from ._geometric_mean import GeometricMean
from ._imtl_l import IMTLL
from ._mean import Mean
from ._pbi import PBI
from ._random import Random
from ._scalarizer_bases import Scalarizer
from ._stch import STCH
from ._sum import Sum
from ._uw import UW

__all__ = [
    "Constant",
    "COSMOS",
    "DWA",
    "FAMO",
    "GeometricMean",
    "IMTLL",
    "Mean",
    "PBI",
    "Random",
    "Scalarizer",
    "STCH",
    "Sum",
    "UW",
]
