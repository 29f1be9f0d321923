"""The default, exact dual-cone projector."""

import torch
from torch import Tensor

from ._matrix import PSDMatrix
from ._projection import project, sum_of_basis_projections
from ._projector import DualConeProjector


def default_kkt_tolerance(dtype: torch.dtype) -> float:
    """
    Returns the default relative KKT tolerance of :class:`ActiveSetDualConeProjector` when it
    works in ``dtype``: its machine epsilon to the power 3/4 (float32's for lower precisions),
    tight enough that UPGrad's and DualProj's results conflict with no row by more than about
    ``1e-10 |J_i|²``.

    The projector works in float64 whatever the dtype of its input (float32 on MPS devices, which
    lack float64), so its default tolerance is ``default_kkt_tolerance(torch.float64)``, about
    ``1.8e-12``, for float32 inputs too (about ``6.4e-6`` on MPS).

    >>> import torch
    >>> from torchjd.linalg import default_kkt_tolerance
    >>> default_kkt_tolerance(torch.float64) < 1e-11 < default_kkt_tolerance(torch.float32)
    True
    """

    if dtype not in (torch.float32, torch.float64):
        dtype = torch.float32
    return torch.finfo(dtype).eps ** 0.75


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
    ``m = 32``, block principal pivoting (one batched solve per round) is exact on
    well-conditioned problems, and tiny problems on CPU are solved in Python floats. Above, and
    where pivoting fails, a singular ``C`` (one Cholesky factorization tells) is factored with
    diagonal pivoting into ``[m, r]``, ``r`` its rank: when the rows positively span their span
    (``m > n`` rows in general position, rows summing to zero), every projection is zero and one
    non-negative combination of the rows equal to zero gives all the solutions; otherwise ADMM
    iterations (one shared ``[m, m]`` inverse, one matrix product per iteration) solve the whole
    batch, and the vectors that they do not finish are finished by the active-set method of Lawson
    and Hanson (1974) in the space of the factor, whose active sets never exceed the rank, so that
    singular Gramians cost no more than their rank.
    All of this runs in float64 (float32 on MPS) on the device of ``G``; the result has the dtype
    that ``U`` and ``G`` promote to. A NaN or infinite value in ``U`` or ``G`` gives NaN
    solutions; an all-zero ``G`` gives ``max(u, 0)``.

    **Rank.** ``G`` is taken at the precision of its dtype: the pivots of ``C`` below
    ``256 eps(G.dtype)`` (about ``5.7e-14`` for float64, ``3.1e-5`` for float32, whose rounding
    alone gives pivots of 4 to 40 eps) count as zero, so that a float32 Gramian of rank ``r`` is
    solved as the rank-``r`` matrix it represents rather than as the full-rank one that its
    rounding makes it. The guarantee below is for that matrix.

    **Guarantee on exit.** With ``τ`` the tolerance, ``s = max_i G_ii`` and
    ``ν = max(max_i |v_i|, max_i |u_i|)`` (per vector): ``v >= u`` holds exactly,
    ``(G v)_i >= -τ s ν`` and ``|(G v)_i (v_i - u_i)| <= τ s ν²`` for every ``i``. For a positive
    definite ``G`` the solution is unique; for a singular one, any minimizer may be returned.

    :param tolerance: The relative KKT tolerance ``τ``, in ``(0, 1)``. ``None`` means
        :func:`default_kkt_tolerance` of the working dtype (float64: about ``1.8e-12``). Settable.

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

    def _tolerance_for(self, G: object) -> float:
        if self._tolerance is not None:
            return self._tolerance
        on_mps = isinstance(G, Tensor) and G.device.type == "mps"
        return default_kkt_tolerance(torch.float32 if on_mps else torch.float64)

    def __call__(self, U: Tensor, G: PSDMatrix) -> Tensor:
        return project(U, G, 0.0, 0.0, self._tolerance_for(G))

    def sum_of_basis_projections(self, weights: Tensor, G: PSDMatrix) -> Tensor:
        return sum_of_basis_projections(weights, G, 0.0, 0.0, self._tolerance_for(G))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tolerance={self._tolerance})"
