"""The compatibility projector: the regularized problem that torchjd 0.18 solves."""

from torch import Tensor

from ._matrix import PSDMatrix
from ._projection import project, sum_of_basis_projections
from ._projector import DualConeProjector

# The regularized problem is strictly convex: solving it to float64's square-root tolerance
# reproduces 0.18's quadprog solutions to its own rounding, whatever the dtype of the input.
_TOLERANCE = 1e-10


def _check_eps(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Parameter `{name}` should be a float. Found `{type(value).__name__}`.")
    if not 0.0 <= value < float("inf"):
        raise ValueError(
            f"Parameter `{name}` should be a finite non-negative float. Found `{value}`."
        )
    return float(value)


class QuadprogProjector(DualConeProjector):
    """
    **The compatibility projector**: solves the regularized problem that torchjd 0.18's default
    UPGrad and DualProj solve, so that ``UPGrad(projector=QuadprogProjector())`` and
    ``DualProj(projector=QuadprogProjector())`` reproduce their results (to about ``1e-5``
    relative). It does not need the ``quadprog`` package: the same problem is solved by this
    library's torch solver, which :class:`ActiveSetDualConeProjector` uses too.

    The problem is ``v = argmin_{v >= u} v^T H v`` with ``H = G / tr(G) + reg_eps I``, where
    ``G / tr(G)`` is replaced by zeros when ``tr(G) < norm_eps``. The ridge trades exactness for a
    positive definite ``H`` (which quadprog needs): ``J^T v`` may then conflict with a row of
    ``J`` by about ``reg_eps |J_i|²``, and below the ``norm_eps`` threshold the result is
    ``max(u, 0)``, which can conflict. Prefer the default, exact projector unless you need 0.18's
    numbers.

    :param norm_eps: Below this trace, ``G`` is treated as zero. Settable.
    :param reg_eps: The ridge added to the trace-normalized ``G``. Settable.

    >>> import torch
    >>> from torchjd.aggregation import UPGrad
    >>> from torchjd.linalg import QuadprogProjector
    >>> A = UPGrad(projector=QuadprogProjector())
    >>> A(torch.tensor([[-4., 1., 1.], [6., 1., 1.]])).round(decimals=4)
    tensor([0.2929, 1.9004, 1.9004])
    """

    def __init__(self, *, norm_eps: float = 0.0001, reg_eps: float = 0.0001):
        self.norm_eps = norm_eps
        self.reg_eps = reg_eps

    @property
    def norm_eps(self) -> float:
        """Below this trace, the Gramian is treated as zero."""
        return self._norm_eps

    @norm_eps.setter
    def norm_eps(self, value: float) -> None:
        self._norm_eps = _check_eps(value, "norm_eps")

    @property
    def reg_eps(self) -> float:
        """The ridge added to the trace-normalized Gramian."""
        return self._reg_eps

    @reg_eps.setter
    def reg_eps(self, value: float) -> None:
        self._reg_eps = _check_eps(value, "reg_eps")

    def __call__(self, U: Tensor, G: PSDMatrix) -> Tensor:
        return project(U, G, self._norm_eps, self._reg_eps, _TOLERANCE)

    def sum_of_basis_projections(self, weights: Tensor, G: PSDMatrix) -> Tensor:
        return sum_of_basis_projections(weights, G, self._norm_eps, self._reg_eps, _TOLERANCE)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(norm_eps={self._norm_eps}, reg_eps={self._reg_eps})"
