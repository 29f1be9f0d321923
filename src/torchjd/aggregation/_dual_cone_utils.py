"""Validation and Gramian preprocessing shared by UPGrad and DualProj."""

import torch
from torch import Tensor

from torchjd.linalg import ActiveSetDualConeProjector, DualConeProjector


def check_non_negative_float(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Parameter `{name}` should be a float. Found `{type(value).__name__}`.")
    if not value >= 0.0 or value == float("inf"):
        raise ValueError(
            f"Parameter `{name}` should be a finite non-negative float. Found `{value}`."
        )


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


def preference_weights(pref_vector: Tensor | None, gramian: Tensor) -> Tensor:
    """Returns the preference weights ``[m]``: ``pref_vector``, or ``1 / m`` each by default."""

    m = gramian.shape[0]
    if pref_vector is None:
        return torch.full((m,), 1.0 / m, dtype=gramian.dtype, device=gramian.device)
    if pref_vector.shape[0] != m:
        raise ValueError(
            f"Parameter `pref_vector` has {pref_vector.shape[0]} entries but the Gramian has {m} rows."
        )
    return pref_vector.to(dtype=gramian.dtype, device=gramian.device)


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
