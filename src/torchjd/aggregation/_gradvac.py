"""
GradVac (Gradient Vaccine): raises the pairwise cosine similarity of the gradients to adaptive
targets, and sums the corrected gradients.

For each objective ``i`` (in parallel) and each other objective ``j`` in a random order, with
``g'_i`` the current corrected gradient of ``i`` (initially ``g_i``), ``φ_ij = cos(g'_i, g_j)`` and
``φ̂_ij`` the target of the pair:

.. math::

    \\text{if } φ_{ij} < \\hat φ_{ij}:\\quad
    g'_i \\leftarrow g'_i + \\frac{\\|g'_i\\| \\left(\\hat φ_{ij} \\sqrt{1 - φ_{ij}^2}
    - φ_{ij} \\sqrt{1 - \\hat φ_{ij}^2}\\right)}{\\|g_j\\| \\sqrt{1 - \\hat φ_{ij}^2}}\\, g_j,
    \\qquad \\hat φ_{ij} \\leftarrow (1 - β)\\, \\hat φ_{ij} + β\\, φ_{ij}

after which ``cos(g'_i, g_j) = φ̂_ij`` (the target before its update). The aggregation is
``Σ_i g'_i``. The targets start at 0 (so the first call projects conflicting gradients onto each
other's normal plane, as PCGrad does) and are kept, one per ordered pair, in the buffer
``targets`` ``[m, m]``.

Every ``g'_i`` stays a linear combination of the rows, with coefficients computed from inner
products only: GradVac is a weighting of the Gramian.

Paper: `Gradient Vaccine: Investigating and Improving Multi-task Optimization in Massively
Multilingual Models <https://arxiv.org/abs/2010.05874>`_ (Wang et al., ICLR 2021).
"""

import torch
from torch import Tensor

from torchjd._stateful import Stateful

from ._aggregator_bases import GramianWeightedAggregator
from ._checks import Delegated, Hyperparameter, real_in
from ._stateful_utils import LazyStateMixin, check_state_size
from ._weighting_bases import GramianWeighting


class GradVacWeighting(LazyStateMixin, GramianWeighting, Stateful):
    """
    Gramian weighting of :class:`GradVac`: gives the weights ``[m]`` such that
    ``weights @ J = Σ_i g'_i``, and updates the cosine targets.

    The order in which each objective visits the others is drawn from torch's global generator.

    :param beta: The rate ``β ∈ [0, 1]`` of the exponential moving average of the pairwise cosine
        similarities that gives the targets (``0.5`` by default, as in torchjd 0.18).
    :param eps: A non-negative stabilizer of the two denominators, relative to the norms that
        they divide by (``cos = g'_i · g_j / ((1 + ε) ‖g'_i‖ ‖g_j‖)``, and ``sqrt(1 - φ̂²) + ε``
        in the correction), so that the weights do not depend on the scale of the rows. torchjd
        0.18 adds it to the products of norms themselves, in absolute units.

    >>> import torch
    >>> from torchjd.aggregation import GradVacWeighting
    >>> weighting = GradVacWeighting()
    >>> weighting(torch.tensor([[1.0, -1.0], [-1.0, 4.0]]))
    tensor([2.0000, 1.2500])
    """

    targets: Tensor
    beta = Hyperparameter(real_in(0.0, 1.0))
    eps = Hyperparameter(real_in(0.0))

    def __init__(self, beta: float = 0.5, eps: float = 1e-8):
        super().__init__()
        self.beta = beta
        self.eps = eps
        self.register_buffer("targets", torch.zeros(0))

    def reset(self) -> None:
        """Forgets the cosine targets: the next call behaves as the first one."""
        self._empty_buffers("targets")

    @torch.no_grad()
    def forward(self, stat: Tensor, /) -> Tensor:
        gramian = stat
        m = gramian.shape[0]
        check_state_size(self.targets, m, "GradVac")
        if self.targets.numel() == 0:
            targets = torch.zeros_like(gramian)
        else:
            targets = self.targets.to(dtype=gramian.dtype, device=gramian.device)

        # Row i of `coefficients` expresses g'_i in the basis of the rows of the matrix.
        coefficients = torch.eye(m, dtype=gramian.dtype, device=gramian.device)
        if m > 1:
            rows = torch.arange(m, device=gramian.device)
            # Each i visits the others in its own random order; i itself sorts last and is dropped.
            scores = torch.rand(m, m, device=gramian.device)
            scores.fill_diagonal_(2.0)
            orders = scores.argsort(dim=1)[:, : m - 1]
            squared_norms = gramian.diagonal().clamp(min=0.0)
            tiny = torch.finfo(gramian.dtype).tiny
            for step in range(m - 1):
                others = orders[:, step]
                inner_products = coefficients @ gramian  # [m, m]: g'_i · g_k
                own_squared_norms = (inner_products * coefficients).sum(dim=1).clamp(min=0.0)
                dots = inner_products[rows, others]
                other_squared_norms = squared_norms[others]
                denominator = (own_squared_norms * other_squared_norms).sqrt()
                cosines = torch.where(
                    denominator > tiny,
                    dots / (denominator.clamp(min=tiny) * (1.0 + self.eps)),
                    torch.zeros_like(dots),
                ).clamp(-1.0, 1.0)
                pair_targets = targets[rows, others]
                sin_targets = (1.0 - pair_targets**2).clamp(min=0.0).sqrt()
                sin_cosines = (1.0 - cosines**2).clamp(min=0.0).sqrt()
                stabilized = sin_targets + self.eps
                corrections = (
                    own_squared_norms.sqrt()
                    * (pair_targets * sin_cosines - cosines * sin_targets)
                    / (other_squared_norms.clamp(min=tiny).sqrt() * stabilized.clamp(min=tiny))
                )
                # A target of 1 with eps = 0 would need an infinite correction: none is made.
                needs_correction = (cosines < pair_targets) & (denominator > tiny) & (stabilized > 0)
                corrections = torch.where(needs_correction, corrections, torch.zeros_like(dots))
                coefficients[rows, others] += corrections
                targets[rows, others] = (1.0 - self.beta) * pair_targets + self.beta * cosines

        self.targets = targets
        return coefficients.sum(dim=0)

    def extra_repr(self) -> str:
        return f"beta={self.beta!r}, eps={self.eps!r}"


class GradVac(GramianWeightedAggregator, Stateful):
    """
    Aggregator that corrects each gradient towards adaptive cosine-similarity targets with the
    others and sums the results (GradVac). The targets live in the buffer ``weighting.targets``.

    :param beta: The rate ``β ∈ [0, 1]`` of the exponential moving average of the targets.
    :param eps: The relative stabilizer of the denominators (see :class:`GradVacWeighting`).

    >>> import torch
    >>> from torchjd.aggregation import GradVac
    >>> aggregator = GradVac()
    >>> aggregator(torch.tensor([[1.0, 0.0], [-1.0, 2.0]]))
    tensor([0.8000, 2.4000])
    """

    beta = Delegated()
    eps = Delegated()

    def __init__(self, beta: float = 0.5, eps: float = 1e-8):
        super().__init__(GradVacWeighting(beta=beta, eps=eps))

    def reset(self) -> None:
        """Forgets the cosine targets: the next call behaves as the first one."""
        self.gramian_weighting.reset()

    def extra_repr(self) -> str:
        return f"beta={self.beta!r}, eps={self.eps!r}"
