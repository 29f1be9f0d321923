"""The default, exact dual-cone projector."""

import math

import torch
from torch import Tensor

from ._matrix import PSDMatrix
from ._projection import project, sum_of_basis_projections
from ._projector import DualConeProjector


def default_kkt_tolerance(dtype: torch.dtype) -> float:
    """
    Returns the default relative KKT tolerance of :class:`ActiveSetDualConeProjector` for a dtype.

    It is the square root of the machine epsilon of the dtype (float32 for lower precisions):
    about ``3.5e-4`` for float32 and ``1.5e-8`` for float64. The solver itself works in float64
    (except on MPS) and usually ends far below it.

    >>> import torch
    >>> from torchjd.linalg import default_kkt_tolerance
    >>> default_kkt_tolerance(torch.float64) < 1e-7
    True
    """

    if dtype not in (torch.float32, torch.float64):
        dtype = torch.float32
    return math.sqrt(torch.finfo(dtype).eps)


def _check_tolerance(tolerance: object) -> None:
    if tolerance is None:
        return
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)):
        raise TypeError(
            f"Parameter `tolerance` should be a float or None. Found `{type(tolerance).__name__}`."
        )
    if not 0.0 < tolerance < 1.0:
        raise ValueError(f"Parameter `tolerance` should be in (0, 1). Found `{tolerance}`.")


class ActiveSetDualConeProjector(DualConeProjector):
    """
    The default projector of :class:`~torchjd.aggregation.UPGrad` and
    :class:`~torchjd.aggregation.DualProj`: solves ``v = argmin_{v >= u} v^T G v`` exactly (up to a
    KKT tolerance), without regularizing ``G``, in pure torch, for the whole batch ``U`` at once.

    The problem is first put in a scale-free form: with ``d = diag(G)`` (floored at
    ``eps * max(d)``), ``y = D^{1/2} v`` turns it into ``argmin_{y >= D^{1/2} u} y^T C y`` with the
    unit-diagonal ``C = D^{-1/2} G D^{-1/2}``, so the magnitude of ``G`` (``1e-30`` or ``1e30``) and
    the spread of its diagonal do not matter. ``m = 1`` and ``m = 2`` have closed forms; up to
    ``m = 16``, block principal pivoting (one batched solve per round) is exact on
    well-conditioned problems, and tiny problems on CPU are solved in Python floats. Otherwise, and
    where that fails, ADMM iterations (one shared ``[m, m]`` inverse, one matrix product per
    iteration) solve the whole batch, and the vectors that they do not finish quickly are finished
    by proximal block principal pivoting (Júdice and Pires, 1994), which stays well conditioned
    when ``G`` is singular. All of this runs in float64 (float32 on MPS) on the device of ``G``;
    the result has the dtype that ``U`` and ``G`` promote to. A NaN or infinite value in ``U`` or
    ``G`` gives NaN solutions; an all-zero ``G`` gives ``max(u, 0)``.

    **Guarantee on exit.** With ``τ`` the tolerance, ``s = max_i G_ii`` and
    ``ν = max(max_i |v_i|, max_i |u_i|)`` (per vector): ``v >= u`` holds exactly,
    ``(G v)_i >= -τ s ν`` and ``|(G v)_i (v_i - u_i)| <= τ s ν²`` for every ``i``. For a positive
    definite ``G`` the solution is unique; for a singular one, any minimizer may be returned.

    :param tolerance: The relative KKT tolerance ``τ``, in ``(0, 1)``. ``None`` means
        :func:`default_kkt_tolerance` of the dtype of the result. Settable.

    >>> import torch
    >>> from torchjd.linalg import ActiveSetDualConeProjector
    >>> G = torch.tensor([[4., -2.], [-2., 4.]])
    >>> ActiveSetDualConeProjector()(torch.eye(2), G)
    tensor([[1.0000, 0.5000],
            [0.5000, 1.0000]])
    """

    def __init__(self, tolerance: float | None = None):
        self.tolerance = tolerance

    @property
    def tolerance(self) -> float | None:
        """The relative KKT tolerance, or ``None`` for :func:`default_kkt_tolerance`."""
        return self._tolerance

    @tolerance.setter
    def tolerance(self, value: float | None) -> None:
        _check_tolerance(value)
        self._tolerance = None if value is None else float(value)

    def _tolerance_for(self, U: object, G: object) -> float:
        if self._tolerance is not None:
            return self._tolerance
        dtypes = [x.dtype for x in (U, G) if isinstance(x, Tensor) and x.is_floating_point()]
        if len(dtypes) == 2:
            return default_kkt_tolerance(torch.promote_types(*dtypes))
        return default_kkt_tolerance(torch.float32)  # the checks raise before it is used

    def __call__(self, U: Tensor, G: PSDMatrix) -> Tensor:
        return project(U, G, 0.0, 0.0, self._tolerance_for(U, G))

    def sum_of_basis_projections(self, weights: Tensor, G: PSDMatrix) -> Tensor:
        return sum_of_basis_projections(weights, G, 0.0, 0.0, self._tolerance_for(weights, G))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tolerance={self._tolerance})"
