"""Validation, Gramian preprocessing and base classes shared by UPGrad and DualProj."""

import torch
from torch import Tensor

from torchjd.linalg import ActiveSetDualConeProjector, DualConeProjector
from torchjd.linalg._dual_cone import (
    _DIRECT_PIVOTING_MAX_SIZE,
    _project_regularized,
    _project_regularized_in_python,
    _sum_of_basis_projections,
    _work_dtype,
    default_kkt_tolerance,
)

from ._aggregator_bases import GramianWeightedAggregator
from ._checks import check_non_negative_float
from ._weighting_bases import GramianWeighting


def check_pref_vector(pref_vector: Tensor | None) -> None:
    if pref_vector is None:
        return
    if not isinstance(pref_vector, Tensor):
        raise TypeError(
            f"Parameter `pref_vector` should be a Tensor or None. Found `{type(pref_vector).__name__}`."
        )
    if pref_vector.dim() != 1 or pref_vector.shape[0] == 0:
        raise ValueError(
            "Parameter `pref_vector` should be a non-empty vector (1 dimension). Found shape "
            f"{tuple(pref_vector.shape)}."
        )
    if not (pref_vector.is_floating_point() and bool(torch.isfinite(pref_vector).all())):
        raise ValueError(
            f"Parameter `pref_vector` should hold finite floating-point values. Found {pref_vector}."
        )


def check_projector(projector: DualConeProjector | None) -> DualConeProjector:
    if projector is None:
        return ActiveSetDualConeProjector()
    if not isinstance(projector, DualConeProjector):
        raise TypeError(
            "Parameter `projector` should be a `torchjd.linalg.DualConeProjector` or None. Found "
            f"`{type(projector).__name__}`."
        )
    return projector


def normalize_and_regularize(gramian: Tensor, norm_eps: float, reg_eps: float) -> Tensor:
    """
    Returns ``G / tr(G) + reg_eps I``, with ``G / tr(G)`` replaced by zeros if ``tr(G) < norm_eps``.

    ``tr(G)`` is the squared Frobenius norm of the matrix: normalizing makes the weights independent
    of its scale, and the ridge ``reg_eps I`` makes the projection well posed when the rows are
    linearly dependent.
    """

    trace = torch.diagonal(gramian).sum()
    large_enough = trace >= norm_eps
    safe_trace = torch.where(large_enough, trace, torch.ones_like(trace))
    normalized = torch.where(large_enough, gramian / safe_trace, torch.zeros_like(gramian))
    m = gramian.shape[0]
    return normalized + reg_eps * torch.eye(m, dtype=gramian.dtype, device=gramian.device)


# Up to this many batch * m * m, Python floats beat the ~20 tensor operations of the tensor path on
# CPU (measured, the two timed in turn: UPGrad up to m = 6, so DualProj up to m = 14).
_PYTHON_MAX_WORK = 216


def _fast_path_setup(projector: DualConeProjector, gramian: Tensor) -> tuple[float, float] | None:
    """
    Returns ``tr(G)`` and the KKT tolerance when the fast paths below apply (default projector,
    ``2 <= m <= 16``), else ``None``. Reading ``tr(G)`` synchronizes on an accelerator, where
    pivoting synchronizes anyway.
    """

    if type(projector) is not ActiveSetDualConeProjector:
        return None
    if not 2 <= gramian.shape[0] <= _DIRECT_PIVOTING_MAX_SIZE:
        return None
    tolerance = projector.tolerance
    if tolerance is None:
        tolerance = default_kkt_tolerance(_work_dtype(gramian.dtype))
    return float(torch.diagonal(gramian).sum()), tolerance


def _fits_in_python(gramian: Tensor, batch: int) -> bool:
    m = gramian.shape[0]
    return gramian.device.type == "cpu" and batch * m * m <= _PYTHON_MAX_WORK


def project_regularized(
    projector: DualConeProjector,
    gramian: Tensor,
    norm_eps: float,
    reg_eps: float,
    vectors: Tensor,
) -> Tensor:
    """
    Returns ``projector(normalize_and_regularize(gramian, norm_eps, reg_eps), vectors)`` for
    ``vectors`` ``[..., m]``, with the dtype and on the device of ``gramian``.

    For the default projector and ``2 <= m <= 16``, this takes a fast path that merges the
    normalization into the projector's own unit-diagonal scaling and skips its generic checks and
    conversions: at these sizes the number of tensor operations, not their arithmetic, is the time.
    On CPU, the smallest problems are solved in Python floats, which costs even less. When pivoting
    fails, it falls back to the general path.
    """

    setup = _fast_path_setup(projector, gramian)
    if setup is not None:
        trace, tolerance = setup
        if not trace > 0.0 or trace < norm_eps:
            # H = reg_eps I (or 0): v = max(u, 0) is a minimizer.
            return vectors.clamp(min=0.0)
        flat = vectors.reshape(-1, gramian.shape[0])
        if _fits_in_python(gramian, flat.shape[0]):
            values = _project_regularized_in_python(
                gramian.tolist(), trace, reg_eps, flat.tolist(), tolerance
            )
            if values is not None:
                return torch.tensor(values, dtype=gramian.dtype).reshape(vectors.shape)
        else:
            solution = _project_regularized(gramian, trace, reg_eps, flat, tolerance)
            if solution is not None:
                return solution.to(gramian.dtype).reshape(vectors.shape)
    return projector(normalize_and_regularize(gramian, norm_eps, reg_eps), vectors)


def sum_of_basis_projections_regularized(
    projector: DualConeProjector,
    gramian: Tensor,
    norm_eps: float,
    reg_eps: float,
    weights: Tensor | None,
) -> Tensor:
    """
    Returns ``project_regularized(projector, gramian, norm_eps, reg_eps, diag(p)).sum(dim=0)`` for
    ``p = weights`` ``[m]`` (UPGrad's weights; ``None`` means ``1/m`` each), with the same fast
    paths, specialized to these bounds.
    """

    m = gramian.shape[0]
    setup = _fast_path_setup(projector, gramian)
    if setup is not None:
        trace, tolerance = setup
        if not trace > 0.0 or trace < norm_eps:
            # The sum of the max(p_i e_i, 0).
            return gramian.new_full((m,), 1.0 / m) if weights is None else weights.clamp(min=0.0)
        if _fits_in_python(gramian, m):
            p = [1.0 / m] * m if weights is None else weights.tolist()
            basis = [[p[i] if j == i else 0.0 for j in range(m)] for i in range(m)]
            values = _project_regularized_in_python(
                gramian.tolist(), trace, reg_eps, basis, tolerance
            )
            if values is not None:
                return torch.tensor([sum(column) for column in zip(*values)], dtype=gramian.dtype)
        else:
            solution = _sum_of_basis_projections(gramian, trace, reg_eps, weights, tolerance)
            if solution is not None:
                return solution.to(gramian.dtype)
    if weights is None:
        weights = gramian.new_full((m,), 1.0 / m)
    regularized = normalize_and_regularize(gramian, norm_eps, reg_eps)
    return projector(regularized, torch.diag(weights)).sum(dim=0)


class DualConeWeighting(GramianWeighting):
    """
    Base of :class:`UPGradWeighting` and :class:`DualProjWeighting`: their hyper-parameters, with
    the same checks and defaults.
    """

    pref_vector: Tensor | None

    def __init__(
        self,
        pref_vector: Tensor | None = None,
        norm_eps: float = 0.0001,
        reg_eps: float = 0.0001,
        projector: DualConeProjector | None = None,
    ):
        super().__init__()
        check_pref_vector(pref_vector)
        check_non_negative_float(norm_eps, "norm_eps")
        check_non_negative_float(reg_eps, "reg_eps")
        self.register_buffer(
            "pref_vector", None if pref_vector is None else pref_vector.detach().clone()
        )
        self.norm_eps = norm_eps
        self.reg_eps = reg_eps
        self.projector = check_projector(projector)

    def extra_repr(self) -> str:
        return (
            f"pref_vector={self.pref_vector!r}, norm_eps={self.norm_eps}, reg_eps={self.reg_eps}, "
            f"projector={self.projector!r}"
        )


class DualConeAggregator(GramianWeightedAggregator):
    """Base of :class:`UPGrad` and :class:`DualProj`: exposes their weighting's hyper-parameters."""

    weighting: DualConeWeighting

    @property
    def pref_vector(self) -> Tensor | None:
        return self.gramian_weighting.pref_vector

    @property
    def norm_eps(self) -> float:
        return self.gramian_weighting.norm_eps

    @property
    def reg_eps(self) -> float:
        return self.gramian_weighting.reg_eps

    @property
    def projector(self) -> DualConeProjector:
        return self.gramian_weighting.projector

    def extra_repr(self) -> str:
        return self.gramian_weighting.extra_repr()
