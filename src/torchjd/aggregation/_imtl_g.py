"""
IMTL-G: the combination of the rows whose projections on all unit rows are equal.

From `Towards Impartial Multi-task Learning <https://openreview.net/forum?id=IMPnRXEWpvr>`_ (Liu et
al., ICLR 2021). With ``u_i = g_i / ||g_i||``, the paper looks for weights ``α`` with ``Σ α_i = 1``
such that ``d = Σ α_i g_i`` satisfies ``d · u_1 = d · u_i`` for every ``i``. Since
``d · u_i = (G α)_i / ||g_i||`` with ``G = J J^T``, this is ``G α ∝ (||g_1||, ..., ||g_m||)``,
whose closed form (for linearly independent rows, and in the least-squares sense otherwise) is

``α = G⁺ s / (1^T G⁺ s)``, ``s_i = sqrt(G_ii)``.

When ``1^T G⁺ s`` vanishes (for instance on a zero matrix), the weights are zero.
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
        norms = torch.sqrt(torch.diagonal(gramian).clamp(min=0.0))
        unnormalized = torch.linalg.pinv(gramian, hermitian=True) @ norms
        total = unnormalized.sum()
        # The normalization is meaningless when the total vanishes (relative to the weights).
        scale = unnormalized.abs().sum()
        degenerate = total.abs() <= scale * gramian.shape[0] * torch.finfo(gramian.dtype).eps
        safe_total = torch.where(degenerate, torch.ones_like(total), total)
        return torch.where(degenerate, torch.zeros_like(unnormalized), unnormalized / safe_total)


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
