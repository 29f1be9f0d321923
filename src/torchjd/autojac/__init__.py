"""Jacobians by backpropagation: jac, backward, mtl_backward and jac_to_grad."""

from ._backward import backward
from ._jac import jac
from ._jac_to_grad import jac_to_grad
from ._mtl_backward import mtl_backward
from ._transform import VmapFallbackWarning

__all__ = ["VmapFallbackWarning", "backward", "jac", "jac_to_grad", "mtl_backward"]
