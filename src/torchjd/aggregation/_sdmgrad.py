"""
SDMGrad (stochastic direction-oriented multiple-gradient descent): finds weights ``w`` on the
simplex that make the combined gradient, regularized towards a target direction, as small as
possible, with projected stochastic gradient steps (with momentum) on ``w``.

The method solves ``min_{w ∈ Δ} ½ ‖Jᵀ(w + λ w̃)‖²`` where ``Jᵀ w̃`` is the target direction
(``w̃ = 1/m``, the mean gradient, unless ``pref_vector`` says otherwise) and ``λ ≥ 0``
(``lambda_``) controls how close the direction stays to it. With ``A = J_1 J_2ᵀ`` the cross matrix
of two Jacobians of independent batches, each call takes ``n_iter`` projected steps warm-started
from the previous call's ``w``, with a velocity ``v`` (started at the first step's gradient):

.. math::

    v \\leftarrow μ v + A (w + λ w̃), \\qquad w \\leftarrow Π_Δ(w - η v),

and returns the weights ``(w + λ w̃) / (1 + λ)``, to give to the losses of a third batch (or of
the second one). ``λ = 0`` is a stochastic MGDA; ``λ → ∞`` tends to the target. ``w`` starts at
``1/m`` and is kept in the buffer ``weights``.

:class:`SDMGradWeighting` takes ``A`` ``[m, m]``, as in torchjd 0.18. :class:`SDMGrad` is the
aggregator of stacked estimates, as :class:`~torchjd.aggregation.MoDo`: ``[J_1; J_2; J_3]``
``[k·m, n]``; with 3, ``w`` is updated with ``J_1 J_2ᵀ`` and the direction uses ``J_3``; with 2,
``(J_1 + J_2) / 2``; with 1, the same matrix serves everywhere (``J Jᵀ``, deterministic).

Paper: `Direction-oriented Multi-objective Learning: Simple and Provable Stochastic Algorithms
<https://arxiv.org/abs/2305.18409>`_ (Xiao, Ban and Ji, NeurIPS 2023).
"""

import torch
from torch import Tensor

from torchjd._stateful import Stateful

from ._aggregator_bases import GramianWeightedAggregator
from ._checks import Delegated, Hyperparameter, int_at_least, optional_vector, real_in
from ._preferences import preference_weights
from ._stateful_utils import (
    LazyStateMixin,
    StackedEstimatesWeighting,
    check_square,
    check_state_size,
    project_onto_simplex,
    stored_or_uniform,
)
from ._weighting_bases import MatrixWeighting


class SDMGradWeighting(LazyStateMixin, MatrixWeighting, Stateful):
    """
    Weighting of SDMGrad: takes the cross matrix ``A = J_1 J_2ᵀ`` ``[m, m]`` of two independent
    Jacobian estimates, updates ``w`` and returns ``(w + λ w̃) / (1 + λ)`` ``[m]``.

    :param lr: The step size ``η > 0`` of the inner projected steps on ``w``.
    :param momentum: The momentum ``μ ∈ [0, 1)`` of the inner steps.
    :param n_iter: The number of inner steps per call.
    :param lambda_: The regularization ``λ ≥ 0`` towards the target direction.
    :param pref_vector: The weights ``w̃`` ``[m]`` of the target direction; ``None`` means ``1/m``
        each (the mean gradient).

    >>> import torch
    >>> from torchjd.aggregation import SDMGradWeighting
    >>> weighting = SDMGradWeighting(lr=0.5, n_iter=1, lambda_=1.0)
    >>> weighting(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    tensor([0.3750, 0.6250])
    """

    weights: Tensor
    lr = Hyperparameter(real_in(0.0, low_inclusive=False))
    momentum = Hyperparameter(real_in(0.0, 1.0, high_inclusive=False))
    n_iter = Hyperparameter(int_at_least(1))
    lambda_ = Hyperparameter(real_in(0.0))
    pref_vector = Hyperparameter(optional_vector)

    def __init__(
        self,
        lr: float = 10.0,
        momentum: float = 0.5,
        n_iter: int = 20,
        lambda_: float = 0.3,
        pref_vector: Tensor | None = None,
    ):
        super().__init__()
        self.lr = lr
        self.momentum = momentum
        self.n_iter = n_iter
        self.lambda_ = lambda_
        self.pref_vector = pref_vector
        self.register_buffer("weights", torch.zeros(0))

    def reset(self) -> None:
        """Sets ``w`` back to uniform weights."""
        self._empty_buffers("weights")

    @torch.no_grad()
    def forward(self, matrix: Tensor, /) -> Tensor:
        check_square(matrix, "SDMGradWeighting")
        m = matrix.shape[0]
        check_state_size(self.weights, m, "SDMGrad")
        weights = stored_or_uniform(self.weights, m, matrix)
        shift = self.lambda_ * preference_weights(self.pref_vector, matrix, 1.0 / m)
        velocity = torch.zeros_like(weights)
        for _ in range(self.n_iter):
            velocity = self.momentum * velocity + matrix @ (weights + shift)
            weights = project_onto_simplex(weights - self.lr * velocity)
        self.weights = weights
        return (weights + shift) / (1.0 + self.lambda_)

    def extra_repr(self) -> str:
        pref_vector = None if self.pref_vector is None else self.pref_vector.tolist()
        return (
            f"lr={self.lr!r}, momentum={self.momentum!r}, n_iter={self.n_iter!r}, "
            f"lambda_={self.lambda_!r}, pref_vector={pref_vector}"
        )


def _delegated_to_inner(name: str) -> property:
    """A property of :class:`SDMGrad` that reads and assigns the one of its ``SDMGradWeighting``."""

    def get(self: "SDMGrad") -> object:
        return getattr(self.gramian_weighting.weighting, name)

    def set(self: "SDMGrad", value: object) -> None:
        setattr(self.gramian_weighting.weighting, name, value)

    return property(get, set)


class SDMGrad(GramianWeightedAggregator, Stateful):
    """
    Aggregator of SDMGrad, a stochastic MGDA regularized towards a target direction, for
    ``num_estimates`` Jacobian estimates stacked along the rows (see the module docstring).

    :param lr: The step size ``η > 0`` of the inner projected steps on ``w``.
    :param momentum: The momentum ``μ ∈ [0, 1)`` of the inner steps.
    :param n_iter: The number of inner steps per call.
    :param lambda_: The regularization ``λ ≥ 0`` towards the target direction.
    :param pref_vector: The weights ``w̃`` ``[m]`` of the target direction; ``None``: ``1/m`` each.
    :param num_estimates: The number of independent Jacobian estimates stacked in the input (1, 2
        or 3).

    >>> import torch
    >>> from torchjd.aggregation import SDMGrad
    >>> aggregator = SDMGrad(lr=0.5, n_iter=1, lambda_=1.0, num_estimates=1)
    >>> aggregator(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    tensor([0.3750, 0.0000])
    """

    lr = _delegated_to_inner("lr")
    momentum = _delegated_to_inner("momentum")
    n_iter = _delegated_to_inner("n_iter")
    lambda_ = _delegated_to_inner("lambda_")
    pref_vector = _delegated_to_inner("pref_vector")

    def __init__(
        self,
        lr: float = 10.0,
        momentum: float = 0.5,
        n_iter: int = 20,
        lambda_: float = 0.3,
        pref_vector: Tensor | None = None,
        num_estimates: int = 3,
    ):
        inner = SDMGradWeighting(lr, momentum, n_iter, lambda_, pref_vector)
        super().__init__(StackedEstimatesWeighting(inner, num_estimates))

    num_estimates = Delegated()

    def reset(self) -> None:
        """Sets ``w`` back to uniform weights."""
        self.gramian_weighting.reset()

    def extra_repr(self) -> str:
        return self.gramian_weighting.extra_repr()
