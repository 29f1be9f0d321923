"""
MoDo (multi-objective gradient with double sampling): updates the weights of the objectives by a
projected gradient step that uses the product of two independent Jacobian estimates, then combines
the gradients with them.

With ``J_1``, ``J_2`` (and ``J_3``) Jacobians ``[m, n]`` computed on independent batches:

.. math::

    λ_{t+1} = Π_Δ\\left(λ_t - γ \\left(J_1 J_2^\\top + ρ I\\right) λ_t\\right), \\qquad
    d_t = J_3^\\top λ_{t+1}

where ``Π_Δ`` is the Euclidean projection onto the probability simplex. Because ``J_1`` and ``J_2``
are independent, ``J_1 J_2ᵀ λ`` is an unbiased estimate of the gradient of ``½‖Jᵀλ‖²``, which is
what removes the bias of stochastic MGDA. ``λ`` starts at ``1/m`` and is kept in the buffer
``weights``.

:class:`MoDoWeighting` takes, as in torchjd 0.18, the cross matrix ``A = J_1 J_2ᵀ`` ``[m, m]``
(not symmetric in general) and returns ``λ_{t+1}``, to give to the losses of a third batch (or of
the mean of the first two). :class:`MoDo` is the aggregator of the stacked estimates
``[J_1; J_2; J_3]`` ``[k·m, n]``, ``k = num_estimates``: with 3 (the paper's Algorithm 1), ``λ`` is
updated with ``J_1 J_2ᵀ`` and the direction is ``J_3ᵀ λ``; with 2, the direction is
``((J_1 + J_2) / 2)ᵀ λ``; with 1, the same batch serves for everything (``J Jᵀ``, biased). It
reads everything from the Gramian of the stack.

Paper: `Three-Way Trade-Off in Multi-Objective Learning: Optimization, Generalization and
Conflict-Avoidance <https://arxiv.org/abs/2305.20057>`_ (Chen et al., NeurIPS 2023; JMLR 2024).
"""

import torch
from torch import Tensor

from torchjd._stateful import Stateful

from ._aggregator_bases import GramianWeightedAggregator
from ._checks import Delegated, Hyperparameter, real_in
from ._stateful_utils import (
    LazyStateMixin,
    StackedEstimatesWeighting,
    check_square,
    check_state_size,
    project_onto_simplex,
    stored_or_uniform,
)
from ._weighting_bases import MatrixWeighting


class MoDoWeighting(LazyStateMixin, MatrixWeighting, Stateful):
    """
    Weighting of MoDo: takes the cross matrix ``A = J_1 J_2ᵀ`` ``[m, m]`` of two independent
    Jacobian estimates, updates ``λ ← Π_Δ(λ - γ (A λ + ρ λ))`` and returns ``λ`` ``[m]``.

    :param gamma: The step size ``γ > 0`` of the projected gradient step on ``λ``.
    :param rho: The regularization ``ρ ≥ 0`` of the weights.

    >>> import torch
    >>> from torchjd.aggregation import MoDoWeighting
    >>> weighting = MoDoWeighting(gamma=0.5, rho=0.0)
    >>> j1 = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    >>> j2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> weighting(j1 @ j2.T)
    tensor([0.3750, 0.6250])
    """

    weights: Tensor
    gamma = Hyperparameter(real_in(0.0, low_inclusive=False))
    rho = Hyperparameter(real_in(0.0))

    def __init__(self, gamma: float = 0.1, rho: float = 0.1):
        super().__init__()
        self.gamma = gamma
        self.rho = rho
        self.register_buffer("weights", torch.zeros(0))

    def reset(self) -> None:
        """Sets ``λ`` back to uniform weights."""
        self._empty_buffers("weights")

    @torch.no_grad()
    def forward(self, matrix: Tensor, /) -> Tensor:
        check_square(matrix, "MoDoWeighting")
        m = matrix.shape[0]
        check_state_size(self.weights, m, "MoDo")
        weights = stored_or_uniform(self.weights, m, matrix)
        step = matrix @ weights + self.rho * weights
        weights = project_onto_simplex(weights - self.gamma * step)
        self.weights = weights
        return weights.clone()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma!r}, rho={self.rho!r}"


class MoDo(GramianWeightedAggregator, Stateful):
    """
    Aggregator of the MoDo algorithm for ``num_estimates`` Jacobian estimates stacked along the
    rows (see the module docstring): ``λ`` follows :class:`MoDoWeighting` on ``J_1 J_2ᵀ`` and the
    direction combines the last estimate (or the mean of two) with ``λ``.

    :param gamma: The step size ``γ > 0`` of the projected gradient step on ``λ``.
    :param rho: The regularization ``ρ ≥ 0`` of the weights.
    :param num_estimates: The number of independent Jacobian estimates stacked in the input (1, 2
        or 3).

    >>> import torch
    >>> from torchjd.aggregation import MoDo
    >>> aggregator = MoDo(gamma=0.5, rho=0.0)
    >>> j1 = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # batch 1: objective 1 has a gradient
    >>> j2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # batch 2
    >>> j3 = torch.tensor([[2.0, 0.0], [0.0, 2.0]])  # batch 3: gives the direction
    >>> aggregator(torch.cat([j1, j2, j3]))
    tensor([0.7500, 1.2500])
    """

    def __init__(self, gamma: float = 0.1, rho: float = 0.1, num_estimates: int = 3):
        super().__init__(StackedEstimatesWeighting(MoDoWeighting(gamma, rho), num_estimates))

    @property
    def gamma(self) -> float:
        return self.gramian_weighting.weighting.gamma

    @gamma.setter
    def gamma(self, value: float) -> None:
        self.gramian_weighting.weighting.gamma = value

    @property
    def rho(self) -> float:
        return self.gramian_weighting.weighting.rho

    @rho.setter
    def rho(self, value: float) -> None:
        self.gramian_weighting.weighting.rho = value

    num_estimates = Delegated()

    def reset(self) -> None:
        """Sets ``λ`` back to uniform weights."""
        self.gramian_weighting.reset()

    def extra_repr(self) -> str:
        return self.gramian_weighting.extra_repr()
