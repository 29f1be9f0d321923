"""
The algebra that all of :mod:`torchjd.autojac` is built from: transforms of tensor dicts, composed
with ``<<`` and united with ``|``.
"""

from ._accumulate import AccumulateGrad, AccumulateJac
from ._base import Composition, Conjunction, RequirementError, TensorDict, Transform
from ._diagonalize import Diagonalize
from ._differentiate import VmapFallbackWarning
from ._init import Init
from ._jac import Grad, Jac
from ._select import Select
from ._stack import Stack

__all__ = [
    "AccumulateGrad",
    "AccumulateJac",
    "Composition",
    "Conjunction",
    "Diagonalize",
    "Grad",
    "Init",
    "Jac",
    "RequirementError",
    "Select",
    "Stack",
    "TensorDict",
    "Transform",
    "VmapFallbackWarning",
]
