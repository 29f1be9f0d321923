"""
SDMGrad (stochastic direction-oriented multiple-gradient descent): finds weights ``w`` on the
simplex that make the combined gradient, regularized towards the mean gradient, as small as
possible, with projected stochastic gradient steps on ``w``.

The method solves ``min_{w ∈ Δ} ½ ‖Jᵀw + λ g_0‖²`` where ``g_0 = Jᵀ 1/m`` is the mean gradient
(the target direction) and ``λ ≥ 0`` (``lmbda``) controls how close the direction stays to it.
With ``J_1``, ``J_2``, ``J_3`` three Jacobians ``[m, n]`` computed on independent batches, each call
takes ``niter`` projected steps warm-started from the previous call's ``w``:

.. math::

    w \\leftarrow Π_Δ\\left(w - β\\, J_1 J_2^\\top \\left(w + \\tfrac{λ}{m} \\mathbf 1\\right)\\right),
    \\qquad d = \\frac{J_3^\\top \\left(w + \\tfrac{λ}{m} \\mathbf 1\\right)}{1 + λ}.

``λ = 0`` is a stochastic MGDA; ``λ → ∞`` tends to the mean gradient. ``w`` starts at ``1/m`` and
is kept in the buffer ``weights``.

**How the matrix is consumed.** As in :class:`~torchjd.aggregation.MoDo`: the input stacks
``num_estimates`` Jacobian estimates along the rows, ``[J_1; J_2; J_3]`` ``[k·m, n]``. With 3,
``w`` is updated with ``J_1 J_2ᵀ`` and the direction uses ``J_3``; with 2, the direction uses
``(J_1 + J_2) / 2``; with 1, the same matrix serves everywhere (``J Jᵀ``, deterministic). It is a
weighting of the Gramian of the stacked matrix.

Paper: `Direction-oriented Multi-objective Learning: Simple and Provable Stochastic Algorithms
<https://arxiv.org/abs/2305.18409>`_ (Xiao, Ban and Ji, NeurIPS 2023).
"""

import torch
from torch import Tensor

from torchjd._stateful import Stateful

from ._aggregator_bases import GramianWeightedAggregator
from ._stateful_utils import (
    LazyStateMixin,
    check_num_estimates,
    check_positive_int,
    check_real,
    check_state_size,
    project_onto_simplex,
    split_estimates,
    spread_weights,
    stored_or_uniform,
)
from ._weighting_bases import GramianWeighting


class SDMGradWeighting(LazyStateMixin, GramianWeighting, Stateful):
    """
    Gramian weighting of :class:`SDMGrad`: takes the Gramian ``[k·m, k·m]`` of
    ``k = num_estimates`` stacked Jacobian estimates, updates ``w`` and returns the weights
    ``[k·m]`` of the rows, ``(w + λ/m) / (1 + λ)`` on the estimate that gives the direction.

    :param lmbda: The regularization ``λ ≥ 0`` towards the mean gradient.
    :param beta: The step size ``β`` of the projected gradient steps on ``w``.
    :param niter: The number ``S`` of projected gradient steps per call.
    :param num_estimates: The number of independent Jacobian estimates stacked in the input.

    >>> import torch
    >>> from torchjd.aggregation import SDMGradWeighting
    >>> weighting = SDMGradWeighting(lmbda=1.0, beta=0.5, niter=1, num_estimates=1)
    >>> weighting(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    tensor([0.3750, 0.6250])
    """

    weights: Tensor

    def __init__(
        self, lmbda: float = 0.3, beta: float = 0.1, niter: int = 20, num_estimates: int = 3
    ):
        super().__init__()
        self.lmbda = check_real("lmbda", lmbda, 0.0, None)
        self.beta = check_real("beta", beta, 0.0, None, low_inclusive=False)
        self.niter = check_positive_int("niter", niter)
        self.num_estimates = check_num_estimates(num_estimates)
        self.register_buffer("weights", torch.zeros(0))

    def reset(self) -> None:
        """Sets ``w`` back to uniform weights."""
        self._empty_buffers("weights")

    @torch.no_grad()
    def forward(self, stat: Tensor, /) -> Tensor:
        m, cross_gramian = split_estimates(stat, self.num_estimates, "SDMGrad")
        check_state_size(self.weights, m, "SDMGrad")
        weights = stored_or_uniform(self.weights, m, stat)
        shift = self.lmbda / m
        for _ in range(self.niter):
            weights = project_onto_simplex(weights - self.beta * cross_gramian @ (weights + shift))
        self.weights = weights
        return spread_weights((weights + shift) / (1.0 + self.lmbda), self.num_estimates)

    def extra_repr(self) -> str:
        return (
            f"lmbda={self.lmbda!r}, beta={self.beta!r}, niter={self.niter!r}, "
            f"num_estimates={self.num_estimates!r}"
        )


class SDMGrad(GramianWeightedAggregator, Stateful):
    """
    Aggregator of SDMGrad: a stochastic MGDA regularized towards the mean gradient. The input is
    ``num_estimates`` Jacobian estimates stacked along the rows (see the module docstring).

    :param lmbda: The regularization ``λ ≥ 0`` towards the mean gradient.
    :param beta: The step size ``β`` of the projected gradient steps on ``w``.
    :param niter: The number ``S`` of projected gradient steps per call.
    :param num_estimates: The number of independent Jacobian estimates stacked in the input.

    >>> import torch
    >>> from torchjd.aggregation import SDMGrad
    >>> aggregator = SDMGrad(lmbda=1.0, beta=0.5, niter=1, num_estimates=1)
    >>> aggregator(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    tensor([0.3750, 0.0000])
    """

    weighting: SDMGradWeighting

    def __init__(
        self, lmbda: float = 0.3, beta: float = 0.1, niter: int = 20, num_estimates: int = 3
    ):
        super().__init__(
            SDMGradWeighting(lmbda=lmbda, beta=beta, niter=niter, num_estimates=num_estimates)
        )

    def reset(self) -> None:
        """Sets ``w`` back to uniform weights."""
        self.gramian_weighting.reset()

    def extra_repr(self) -> str:
        return self.gramian_weighting.extra_repr()
