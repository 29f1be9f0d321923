"""
IMTL-G: the combination of the rows whose projections on all unit rows are equal.

From `Towards Impartial Multi-task Learning <https://openreview.net/forum?id=IMPnRXEWpvr>`_ (Liu et
al., ICLR 2021). With ``u_i = g_i / ||g_i||``, the paper looks for weights ``α`` with ``Σ α_i = 1``
such that ``d = Σ α_i g_i`` satisfies ``d · u_1 = d · u_i`` for every ``i``. Since
``d · u_i = (G α)_i / ||g_i||`` with ``G = J J^T``, this is ``G α ∝ (||g_1||, ..., ||g_m||)``,
whose closed form (for linearly independent rows, and in the least-squares sense otherwise) is

``α = G⁺ s / (1^T G⁺ s)``, ``s_i = sqrt(G_ii)``.

When ``s`` is not in the range of ``G`` (linearly dependent rows such as two antiparallel ones),
the only solution has ``G α = 0``: the projections are all zero and so is the aggregation; the
weights are then the smallest ``α`` of the null space of ``G`` with ``Σ α_i = 1``. When
``1^T G⁺ s`` vanishes (for instance on a zero matrix), the weights are zero.
"""

import torch
from torch import Tensor

from ._aggregator_bases import GramianWeightedAggregator
from ._weighting_bases import GramianWeighting



class IMTLGWeighting(GramianWeighting):
    """
    Weights ``α = G⁺ s / (1^T G⁺ s)`` of IMTL-G, from the Gramian ``G`` ``[m, m]``, with
    ``s = sqrt(diag(G))``.

    The pseudo-inverse treats eigenvalues below ``m · eps(dtype) · λ_max(G)`` as zero. The weights
    are differentiable with respect to the Gramian.

    >>> import torch
    >>> from torchjd.aggregation import IMTLGWeighting
    >>> IMTLGWeighting()(torch.tensor([[4., 0.], [0., 1.]]))
    tensor([0.3333, 0.6667])
    """

    def __init__(self):
        super().__init__()

    def forward(self, stat: Tensor, /) -> Tensor:
        gramian = stat
        m = gramian.shape[0]
        eps = torch.finfo(gramian.dtype).eps
        # s is outside the range of G when G G⁺ s misses it by more than this (relative): the
        # range of a nearly singular Gramian is only known to about sqrt(eps).
        range_tolerance = eps**0.5
        norms = torch.sqrt(torch.diagonal(gramian).clamp(min=0.0))
        inverse = torch.linalg.pinv(gramian, hermitian=True)
        unnormalized = inverse @ norms

        # G α = t s has a solution only if t s is in the range of G. When s is not (e.g. on
        # antiparallel rows), t = 0: the equal projections are all 0 and α is in the null space of
        # G, so the aggregation is exactly 0. The null vector with the smallest norm that sums to
        # one is P 1 / (1^T P 1), P = I - G⁺ G the projector onto the null space.
        residual = norms - gramian @ unnormalized
        identity = torch.eye(m, dtype=gramian.dtype, device=gramian.device)
        null_projector = identity - inverse @ gramian
        null_weights = null_projector.sum(dim=1)  # P 1
        null_total = null_weights.sum()  # 1^T P 1 = ||P 1||², 0 if no null vector sums to one
        outside_range = torch.linalg.vector_norm(residual) > range_tolerance * norms.sum()
        use_null = outside_range & (null_total > m * range_tolerance)
        safe_null_total = torch.where(use_null, null_total, torch.ones_like(null_total))

        total = unnormalized.sum()
        # The normalization is meaningless when the total vanishes (relative to the weights).
        scale = unnormalized.abs().sum()
        degenerate = total.abs() <= scale * m * eps
        safe_total = torch.where(degenerate, torch.ones_like(total), total)
        least_squares = torch.where(
            degenerate, torch.zeros_like(unnormalized), unnormalized / safe_total
        )
        return torch.where(use_null, null_weights / safe_null_total, least_squares)


class IMTLG(GramianWeightedAggregator):
    """
    Aggregates the rows into the combination, with weights summing to one, that has the same
    projection on every normalized row (IMTL-G).

    See :class:`IMTLGWeighting` for the weights.

    >>> import torch
    >>> from torchjd.aggregation import IMTLG
    >>> A = IMTLG()
    >>> A
    IMTLG()
    >>> A(torch.tensor([[2., 0.], [0., 1.]]))
    tensor([0.6667, 0.6667])
    """

    def __init__(self):
        super().__init__(IMTLGWeighting())
