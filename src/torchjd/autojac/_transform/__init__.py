"""
The algebra that all of :mod:`torchjd.autojac` is built from: transforms of tensor dicts, composed
with ``<<`` and united with ``|``.
"""

from ._accumulate import AccumulateGrad, AccumulateJac
from ._base import Composition, Conjunction, RequirementError, TensorDict, Transform
from ._diagonalize import Diagonalize, DiagonalizeByKey
from ._differentiate import VmapFallbackWarning
from ._fastest import Fastest
from ._init import Init
from ._jac import Grad, Jac
from ._select import Select
from ._stack import Stack
from ._sum_rows import SumRows

__all__ = [
    "AccumulateGrad",
    "AccumulateJac",
    "Composition",
    "Conjunction",
    "Diagonalize",
    "DiagonalizeByKey",
    "Fastest",
    "Grad",
    "Init",
    "Jac",
    "RequirementError",
    "Select",
    "Stack",
    "SumRows",
    "TensorDict",
    "Transform",
    "VmapFallbackWarning",
]
