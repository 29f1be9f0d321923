"""
PCGrad: project each gradient off the gradients it conflicts with, then sum.

From `Gradient Surgery for Multi-Task Learning <https://arxiv.org/abs/2001.06782>`_ (Yu et al.,
NeurIPS 2020). For every row ``g_i``, start from ``g_i^PC = g_i`` and, for each other row ``g_j`` in
a random order,

``if g_i^PC · g_j < 0: g_i^PC ← g_i^PC - (g_i^PC · g_j) / ||g_j||² g_j``;

the aggregation is ``Σ_i g_i^PC``. Each ``g_i^PC`` stays a linear combination ``W_i J`` of the
rows, and ``g_i^PC · g_j = (W G)_ij`` with ``G = J J^T``, so the whole method runs on the Gramian:
the weights are the column sums of ``W``. All rows are projected in parallel, one other row each
step.
"""

import torch
from torch import Tensor

from ._aggregator_bases import GramianWeightedAggregator
from ._weighting_bases import GramianWeighting


class PCGradWeighting(GramianWeighting):
    """
    Weights of PCGrad computed from the Gramian ``G`` ``[m, m]``.

    Like the paper, every row visits the other rows in its own random order, drawn with torch's
    global generator (``torch.manual_seed`` makes it reproducible). With two rows the order does not
    matter and the result is deterministic. Runs under ``torch.no_grad()``.

    >>> import torch
    >>> from torchjd.aggregation import PCGradWeighting
    >>> matrix = torch.tensor([[1., 0.], [-1., 1.]])
    >>> PCGradWeighting()(matrix @ matrix.T)
    tensor([2.0000, 1.5000])
    """

    @torch.no_grad()
    def __init__(self):
        super().__init__()

    def forward(self, stat: Tensor, /) -> Tensor:
        gramian = stat
        m = gramian.shape[0]
        rows = torch.arange(m, device=gramian.device)
        # Row i's order of the others: a random permutation with i itself sorted last (and dropped).
        keys = torch.rand(m, m, device=gramian.device)
        keys[rows, rows] = 2.0
        orders = torch.argsort(keys, dim=1)[:, : m - 1]  # [m, m - 1]

        diagonal = torch.diagonal(gramian)
        projections = torch.eye(m, dtype=gramian.dtype, device=gramian.device)  # W, g_i^PC = W_i J
        for step in range(m - 1):
            others = orders[:, step]  # [m], row i is projected off row others[i]
            dots = (projections * gramian[others]).sum(dim=1)  # g_i^PC · g_{others[i]}
            squared_norms = diagonal[others]
            # A zero g_j cannot conflict with anything: nothing to remove.
            conflicting = (dots < 0) & (squared_norms > 0)
            safe_norms = torch.where(conflicting, squared_norms, torch.ones_like(squared_norms))
            coefficients = torch.where(conflicting, dots / safe_norms, torch.zeros_like(dots))
            projections[rows, others] -= coefficients
        return projections.sum(dim=0)


class PCGrad(GramianWeightedAggregator):
    """
    Aggregates the rows by PCGrad's gradient surgery: remove from each row its conflicting
    components along the other rows (in a random order per row), then sum.

    See :class:`PCGradWeighting` for the weights and the randomness.

    >>> import torch
    >>> from torchjd.aggregation import PCGrad
    >>> A = PCGrad()
    >>> A
    PCGrad()
    >>> A(torch.tensor([[1., 0.], [-1., 1.]]))
    tensor([0.5000, 1.5000])
    """

    def __init__(self):
        super().__init__(PCGradWeighting())
