"""
Krum and Multi-Krum: keep the rows closest to their neighbours, robust to Byzantine rows.

From `Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent
<https://papers.nips.cc/paper/6617-machine-learning-with-adversaries-byzantine-tolerant-gradient-descent>`_
(Blanchard et al., NeurIPS 2017). With ``f`` Byzantine rows among ``m``, each row gets the score

``s(i) = Σ_{j ∈ N_i} ||g_i - g_j||²``, ``N_i`` the ``m - f - 2`` rows closest to ``g_i``,

and Krum returns the row of smallest score. Multi-Krum (same paper) averages the ``n_selected``
rows of smallest scores. The distances come from the Gramian:
``||g_i - g_j||² = G_ii + G_jj - 2 G_ij``. As in torchjd 0.18, ``m ≥ f + 3`` rows are required
(each row then has at least one neighbour); the paper's guarantee needs ``m > 2 f + 2``. Unlike
0.18, which sums the plain distances ``||g_i - g_j||``, the scores sum their squares, as the paper
defines them.
"""

import torch
from torch import Tensor

from ._aggregator_bases import GramianWeightedAggregator
from ._checks import Delegated, Hyperparameter, int_at_least
from ._weighting_bases import GramianWeighting


class KrumWeighting(GramianWeighting):
    """
    Weights ``1 / n_selected`` on the ``n_selected`` rows of smallest Krum score, ``0`` elsewhere,
    from the Gramian ``G`` ``[m, m]``.

    Ties are broken in favour of the lowest index. Runs under ``torch.no_grad()``.

    :param n_byzantine: The number ``f`` of Byzantine rows to tolerate.
    :param n_selected: How many rows to average (``1`` is Krum, more is Multi-Krum).

    >>> import torch
    >>> from torchjd.aggregation import KrumWeighting
    >>> matrix = torch.tensor([[1., 0.], [1.2, 0.], [0.9, 0.], [10., 10.], [1., 0.2]])
    >>> KrumWeighting(n_byzantine=1)(matrix @ matrix.T)
    tensor([1., 0., 0., 0., 0.])
    """

    n_byzantine = Hyperparameter(int_at_least(0))
    n_selected = Hyperparameter(int_at_least(1))

    def __init__(self, n_byzantine: int, n_selected: int = 1):
        super().__init__()
        self.n_byzantine = n_byzantine
        self.n_selected = n_selected

    def extra_repr(self) -> str:
        return f"n_byzantine={self.n_byzantine}, n_selected={self.n_selected}"

    @torch.no_grad()
    def forward(self, gramian: Tensor, /) -> Tensor:
        m = gramian.shape[0]
        if m < self.n_byzantine + 3:
            raise ValueError(
                f"Krum needs at least n_byzantine + 3 = {self.n_byzantine + 3} rows. Found {m} "
                f"rows."
            )
        if self.n_selected > m:
            raise ValueError(
                f"Parameter `n_selected` should be at most the number of rows ({m}). Found "
                f"`{self.n_selected}`."
            )
        diagonal = torch.diagonal(gramian)
        distances = (diagonal.unsqueeze(0) + diagonal.unsqueeze(1) - 2.0 * gramian).clamp(min=0.0)
        # Row i's own zero distance is among its m - f - 1 smallest, so it adds nothing to the sum.
        closest, _ = torch.topk(distances, m - self.n_byzantine - 1, dim=1, largest=False)
        scores = closest.sum(dim=1)
        order = torch.sort(scores, stable=True).indices
        weights = torch.zeros(m, dtype=gramian.dtype, device=gramian.device)
        weights[order[: self.n_selected]] = 1.0 / self.n_selected
        return weights


class Krum(GramianWeightedAggregator):
    """
    Aggregates the rows with (Multi-)Krum: the mean of the ``n_selected`` rows whose
    ``m - n_byzantine - 2`` nearest neighbours are closest, tolerating ``n_byzantine`` arbitrary
    rows.

    Needs ``m ≥ n_byzantine + 3`` rows (the paper's guarantee: ``m > 2 n_byzantine + 2``) and
    ``n_selected ≤ m``.

    :param n_byzantine: The number ``f`` of Byzantine rows to tolerate.
    :param n_selected: How many rows to average (``1`` is Krum, more is Multi-Krum).

    >>> import torch
    >>> from torchjd.aggregation import Krum
    >>> A = Krum(n_byzantine=1, n_selected=2)
    >>> A
    Krum(n_byzantine=1, n_selected=2)
    >>> A(torch.tensor([[1., 0.], [1.2, 0.], [0.9, 0.], [10., 10.], [1., 0.2]]))
    tensor([0.9500, 0.0000])
    """

    n_byzantine = Delegated()
    n_selected = Delegated()

    def __init__(self, n_byzantine: int, n_selected: int = 1):
        super().__init__(KrumWeighting(n_byzantine=n_byzantine, n_selected=n_selected))

    def extra_repr(self) -> str:
        return self.gramian_weighting.extra_repr()
