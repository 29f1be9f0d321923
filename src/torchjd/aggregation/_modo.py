"""
MoDo (multi-objective gradient with double sampling): updates the weights of the objectives by a
projected gradient step that uses the product of two independent Jacobian estimates, then combines
the gradients with them.

With ``J_1``, ``J_2``, ``J_3`` three Jacobians ``[m, n]`` computed on independent batches:

.. math::

    λ_{t+1} = Π_Δ\\left(λ_t - γ \\left(J_1 J_2^\\top + ρ I\\right) λ_t\\right), \\qquad
    d_t = J_3^\\top λ_{t+1}

where ``Π_Δ`` is the Euclidean projection onto the probability simplex. Because ``J_1`` and ``J_2``
are independent, ``J_1 J_2ᵀ λ`` is an unbiased estimate of the gradient of ``½‖Jᵀλ‖²``, which is
what removes the bias of stochastic MGDA. ``λ`` starts at ``1/m`` and is kept in the buffer
``weights``.

**How the matrix is consumed.** The input is the ``num_estimates`` estimates stacked along the
rows, ``[J_1; J_2; J_3]`` of shape ``[k·m, n]`` (e.g. ``jac`` of the concatenation of the ``m``
losses of three batches):

- ``num_estimates=3`` (the paper's Algorithm 1): ``λ`` is updated with ``J_1 J_2ᵀ`` and the
  direction is ``J_3ᵀ λ``;
- ``num_estimates=2``: ``λ`` is updated with ``J_1 J_2ᵀ`` and the direction is
  ``((J_1 + J_2) / 2)ᵀ λ``;
- ``num_estimates=1``: the same batch is used for everything (``J Jᵀ``, biased, deterministic).

Everything depends on the rows only through inner products, so MoDo is a weighting of the
Gramian of the stacked matrix, ``[k·m, k·m]``.

Paper: `Three-Way Trade-Off in Multi-Objective Learning: Optimization, Generalization and
Conflict-Avoidance <https://arxiv.org/abs/2305.20057>`_ (Chen et al., NeurIPS 2023; JMLR 2024).
"""

import torch
from torch import Tensor

from torchjd._stateful import Stateful

from ._aggregator_bases import GramianWeightedAggregator
from ._stateful_utils import (
    LazyStateMixin,
    check_num_estimates,
    check_real,
    check_state_size,
    project_onto_simplex,
    split_estimates,
    spread_weights,
    stored_or_uniform,
)
from ._weighting_bases import GramianWeighting


class MoDoWeighting(LazyStateMixin, GramianWeighting, Stateful):
    """
    Gramian weighting of :class:`MoDo`: takes the Gramian ``[k·m, k·m]`` of ``k = num_estimates``
    stacked Jacobian estimates, updates ``λ`` and returns the weights ``[k·m]`` of the rows.

    :param gamma: The step size ``γ`` of the projected gradient step on ``λ``.
    :param rho: The regularization ``ρ ≥ 0`` of the weights.
    :param num_estimates: The number ``k`` of independent Jacobian estimates stacked in the input
        (1, 2 or 3; 3 as in the paper's algorithm).

    >>> import torch
    >>> from torchjd.aggregation import MoDoWeighting
    >>> weighting = MoDoWeighting(gamma=0.5, rho=0.0, num_estimates=1)
    >>> weighting(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    tensor([0.3750, 0.6250])
    """

    weights: Tensor

    def __init__(self, gamma: float = 1e-3, rho: float = 0.1, num_estimates: int = 3):
        super().__init__()
        self.gamma = check_real("gamma", gamma, 0.0, None, low_inclusive=False)
        self.rho = check_real("rho", rho, 0.0, None)
        self.num_estimates = check_num_estimates(num_estimates)
        self.register_buffer("weights", torch.zeros(0))

    def reset(self) -> None:
        """Sets ``λ`` back to uniform weights."""
        self._empty_buffers("weights")

    @torch.no_grad()
    def forward(self, stat: Tensor, /) -> Tensor:
        m, cross_gramian = split_estimates(stat, self.num_estimates, "MoDo")
        check_state_size(self.weights, m, "MoDo")
        weights = stored_or_uniform(self.weights, m, stat)
        step = cross_gramian @ weights + self.rho * weights
        weights = project_onto_simplex(weights - self.gamma * step)
        self.weights = weights
        return spread_weights(weights, self.num_estimates)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma!r}, rho={self.rho!r}, num_estimates={self.num_estimates!r}"


class MoDo(GramianWeightedAggregator, Stateful):
    """
    Aggregator of the MoDo algorithm: ``λ`` follows a projected gradient step built from two
    independent Jacobian estimates, and the direction combines a third one with ``λ``. The input
    is ``num_estimates`` Jacobian estimates stacked along the rows (see the module docstring).

    :param gamma: The step size ``γ`` of the projected gradient step on ``λ``.
    :param rho: The regularization ``ρ ≥ 0`` of the weights.
    :param num_estimates: The number of independent Jacobian estimates stacked in the input.

    >>> import torch
    >>> from torchjd.aggregation import MoDo
    >>> aggregator = MoDo(gamma=0.5, rho=0.0)
    >>> j1 = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # batch 1: objective 1 has a gradient
    >>> j2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # batch 2
    >>> j3 = torch.tensor([[2.0, 0.0], [0.0, 2.0]])  # batch 3: gives the direction
    >>> aggregator(torch.cat([j1, j2, j3]))
    tensor([0.7500, 1.2500])
    """

    weighting: MoDoWeighting

    def __init__(self, gamma: float = 1e-3, rho: float = 0.1, num_estimates: int = 3):
        super().__init__(MoDoWeighting(gamma=gamma, rho=rho, num_estimates=num_estimates))

    def reset(self) -> None:
        """Sets ``λ`` back to uniform weights."""
        self.gramian_weighting.reset()

    def extra_repr(self) -> str:
        return self.gramian_weighting.extra_repr()
