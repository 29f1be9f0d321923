"""
Aligned-MTL: combine the rows after making them orthogonal with equal norms.

From `Independent Component Alignment for Multi-Task Learning <https://arxiv.org/abs/2305.19000>`_
(Senushkin et al., CVPR 2023). With the eigen-decomposition ``G = J J^T = V Λ V^T`` restricted to
its ``r`` non-zero eigenvalues ``λ_1 ≥ ... ≥ λ_r > 0``, the balance matrix

``B = σ V_r Λ_r^{-1/2} V_r^T``

aligns the rows: ``B J`` has ``r`` equal non-zero singular values ``σ`` (its Gramian is ``σ²``
times the projector ``V_r V_r^T``), so the condition number of the aligned system is one. The
aggregation is ``(B J)^T w = J^T (B w)``, with ``w`` the preference vector (``1/m`` each by
default, as in torchjd 0.18; the authors' code uses ones, ``m`` times larger), so the weights are
``B w``. The scale ``σ`` is ``sqrt(λ_r)`` (``"min"``, the paper's default), ``sqrt(median(λ))`` (``"median"``) or ``sqrt(mean(λ))`` (``"rmse"``).
"""

from typing import Literal

import torch
from torch import Tensor

from ._aggregator_bases import GramianWeightedAggregator
from ._checks import Delegated, Hyperparameter, optional_vector
from ._preferences import preference_weights
from ._weighting_bases import GramianWeighting

_SCALE_MODES = ("min", "median", "rmse")


def _check_scale_mode(name: str, scale_mode: object) -> str:
    if scale_mode not in _SCALE_MODES:
        raise ValueError(f"Parameter `{name}` should be one of {_SCALE_MODES}. Found `{scale_mode!r}`.")
    return scale_mode  # type: ignore[return-value]


class AlignedMTLWeighting(GramianWeighting):
    """
    Weights ``B w`` of Aligned-MTL, from the Gramian ``G`` ``[m, m]``.

    Eigenvalues up to ``m · eps(dtype) · λ_max`` count as zero. Runs under ``torch.no_grad()``:
    the eigen-decomposition is not differentiated through. The median of an even number of
    eigenvalues is the lower of the two middle ones.

    :param pref_vector: Preference vector ``w`` ``[m]`` over the objectives; ``None`` means ``1/m``
        each.
        Its length must match the number of rows.
    :param scale_mode: How to choose the common singular value ``σ``: ``"min"``, ``"median"`` or
        ``"rmse"``.

    >>> import torch
    >>> from torchjd.aggregation import AlignedMTLWeighting
    >>> AlignedMTLWeighting()(torch.tensor([[4., 0.], [0., 1.]]))
    tensor([0.2500, 0.5000])
    """

    pref_vector = Hyperparameter(optional_vector)
    scale_mode = Hyperparameter(_check_scale_mode)

    def __init__(
        self,
        pref_vector: Tensor | None = None,
        scale_mode: Literal["min", "median", "rmse"] = "min",
    ):
        super().__init__()
        self.pref_vector = pref_vector
        self.scale_mode = scale_mode

    def extra_repr(self) -> str:
        pref_vector = None if self.pref_vector is None else self.pref_vector.tolist()
        return f"pref_vector={pref_vector}, scale_mode={self.scale_mode!r}"

    @torch.no_grad()
    def forward(self, stat: Tensor, /) -> Tensor:
        gramian = stat
        m = gramian.shape[0]
        preferences = preference_weights(self.pref_vector, gramian, 1.0 / m)

        eigenvalues, eigenvectors = torch.linalg.eigh(gramian)
        tolerance = eigenvalues.max().clamp(min=0.0) * m * torch.finfo(gramian.dtype).eps
        is_kept = eigenvalues > tolerance
        kept = eigenvalues[is_kept]
        if kept.numel() == 0:
            return torch.zeros(m, dtype=gramian.dtype, device=gramian.device)
        if self.scale_mode == "min":
            squared_scale = kept.min()
        elif self.scale_mode == "median":
            squared_scale = kept.median()
        else:
            squared_scale = kept.mean()

        safe_eigenvalues = torch.where(is_kept, eigenvalues, torch.ones_like(eigenvalues))
        inverse_roots = torch.where(
            is_kept, safe_eigenvalues.rsqrt(), torch.zeros_like(eigenvalues)
        )
        balance = torch.sqrt(squared_scale) * (eigenvectors * inverse_roots) @ eigenvectors.T  # B
        return balance @ preferences


class AlignedMTL(GramianWeightedAggregator):
    """
    Aggregates the rows after aligning them (Aligned-MTL): ``J^T B w``, where ``B J`` has
    orthogonal rows of equal norm on the span of ``J``.

    See :class:`AlignedMTLWeighting` for the weights.

    :param pref_vector: Preference vector ``w`` ``[m]`` over the objectives; ``None`` means ``1/m``
        each.
    :param scale_mode: ``"min"``, ``"median"`` or ``"rmse"``: which eigenvalue of the Gramian sets
        the common singular value of the aligned rows.

    >>> import torch
    >>> from torchjd.aggregation import AlignedMTL
    >>> A = AlignedMTL()
    >>> A
    AlignedMTL(pref_vector=None, scale_mode='min')
    >>> A(torch.tensor([[2., 0.], [0., 1.]]))
    tensor([0.5000, 0.5000])
    """

    pref_vector = Delegated()
    scale_mode = Delegated()

    def __init__(
        self,
        pref_vector: Tensor | None = None,
        scale_mode: Literal["min", "median", "rmse"] = "min",
    ):
        super().__init__(AlignedMTLWeighting(pref_vector=pref_vector, scale_mode=scale_mode))

    def extra_repr(self) -> str:
        return self.gramian_weighting.extra_repr()
