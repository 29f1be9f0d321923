"""
CR-MOGM (correlation-reduced multi-objective gradient manipulation): smooths the weights of
another weighting with a moving average, which reduces the bias that the correlation between the
stochastic weights and the stochastic gradients causes.

.. math::

    w_t = α\\, w_{t-1} + (1 - α)\\, \\operatorname{inner}(G_t)

where ``inner`` is the wrapped weighting (in the paper: MGDA, PCGrad, CAGrad, ...) and ``α`` the
weight on the *previous* weights, as in torchjd 0.18 (``α = 0``: no smoothing, ``α = 1``: frozen
weights). ``w_0`` is ``initial_weights`` when given; otherwise the first call returns
``inner(G_1)`` itself. The previous weights are kept in the buffer ``weights`` ``[m]``.

Paper: `On the Convergence of Stochastic Multi-Objective Gradient Manipulation and Beyond
<https://openreview.net/forum?id=ScwfQ7hdwyP>`_ (Zhou et al., NeurIPS 2022).
"""

import torch
from torch import Tensor

from torchjd._stateful import Stateful

from ._aggregator_bases import GramianWeightedAggregator
from ._checks import Delegated, Hyperparameter, optional_vector, real_in
from ._stateful_utils import LazyStateMixin, check_state_size
from ._weighting_bases import Weighting


class CRMOGMWeighting(LazyStateMixin, Weighting, Stateful):
    """
    Weighting that returns a moving average of the weights of ``weighting`` (CR-MOGM).

    It passes its input unchanged to ``weighting``, so it takes whatever that weighting takes: a
    Gramian ``[m, m]`` for a Gramian-based one, the matrix ``[m, n]`` for a matrix-based one.
    The averaged weights are constants: no gradient flows through them.

    :param weighting: The weighting whose weights are averaged. There is no default: the paper
        wraps several methods (MGDA in its experiments), and the choice is the user's.
    :param alpha: The weight ``α ∈ [0, 1]`` of the previous weights in the average; ``0`` gives
        back ``weighting``. The paper's Corollary 1 lets it grow towards 1 as the learning rate decays:
        assign ``alpha`` between calls to follow such a schedule.
    :param initial_weights: The weights ``w_0`` ``[m]`` before the first call, or ``None`` to
        start from the first weights of ``weighting``.

    >>> import torch
    >>> from torch import nn
    >>> from torchjd.aggregation import CRMOGMWeighting, Weighting
    >>> class Normalized(Weighting):
    ...     def forward(self, stat, /):
    ...         return stat.diagonal() / stat.diagonal().sum()
    >>> weighting = CRMOGMWeighting(Normalized(), alpha=0.5)
    >>> weighting(torch.tensor([[3.0, 0.0], [0.0, 1.0]]))
    tensor([0.7500, 0.2500])
    >>> weighting(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    tensor([0.6250, 0.3750])
    """

    weights: Tensor
    alpha = Hyperparameter(real_in(0.0, 1.0))
    initial_weights = Hyperparameter(optional_vector)

    def __init__(
        self, weighting: Weighting, alpha: float = 0.9, initial_weights: Tensor | None = None
    ):
        super().__init__()
        if not isinstance(weighting, Weighting):
            raise TypeError(
                f"Parameter `weighting` should be a Weighting. Found `{type(weighting).__name__}`."
            )
        self.weighting = weighting
        self.alpha = alpha
        self.initial_weights = initial_weights
        self.register_buffer("weights", torch.zeros(0))

    def reset(self) -> None:
        """Forgets the averaged weights (and resets the wrapped weighting if it can)."""
        self._empty_buffers("weights")
        inner_reset = getattr(self.weighting, "reset", None)
        if callable(inner_reset):
            inner_reset()

    def forward(self, stat: Tensor, /) -> Tensor:
        m = stat.shape[0]
        check_state_size(self.weights, m, "CRMOGM")
        with torch.no_grad():
            new_weights = self.weighting(stat).detach()
            if self.weights.numel() != 0:
                previous = self.weights
            elif self.initial_weights is not None:
                previous = self.initial_weights
                if previous.shape != (m,):
                    raise ValueError(
                        f"Parameter `initial_weights` should have one value per row ({m}). Found "
                        f"shape {tuple(previous.shape)}."
                    )
            else:
                previous = new_weights
            previous = previous.to(dtype=new_weights.dtype, device=new_weights.device)
            averaged = self.alpha * previous + (1.0 - self.alpha) * new_weights
            self.weights = averaged
        return averaged.clone()

    def extra_repr(self) -> str:
        initial = None if self.initial_weights is None else self.initial_weights.tolist()
        return f"weighting={self.weighting!r}, alpha={self.alpha!r}, initial_weights={initial}"


class CRMOGM(GramianWeightedAggregator, Stateful):
    """
    Aggregator ``Jᵀ w_t`` whose weights are a moving average of those of a Gramian-based
    ``weighting`` (CR-MOGM): ``w_t = α w_{t-1} + (1 - α) weighting(J Jᵀ)``.

    :param weighting: The Gramian-based weighting whose weights are averaged (required).
    :param alpha: The weight ``α ∈ [0, 1]`` of the previous weights in the average.
    :param initial_weights: The weights ``w_0`` ``[m]`` before the first call, or ``None``.

    >>> import torch
    >>> from torchjd.aggregation import CRMOGM, Weighting
    >>> class Normalized(Weighting):
    ...     def forward(self, stat, /):
    ...         return stat.diagonal() / stat.diagonal().sum()
    >>> aggregator = CRMOGM(Normalized(), alpha=0.5)
    >>> aggregator(torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    tensor([0.6667, 1.0000])
    """

    weighting: CRMOGMWeighting

    alpha = Delegated()
    initial_weights = Delegated()

    def __init__(
        self, weighting: Weighting, alpha: float = 0.9, initial_weights: Tensor | None = None
    ):
        super().__init__(CRMOGMWeighting(weighting, alpha=alpha, initial_weights=initial_weights))

    def reset(self) -> None:
        """Forgets the averaged weights (and resets the wrapped weighting if it can)."""
        self.gramian_weighting.reset()

    def __repr__(self) -> str:
        return f"CRMOGM({self.gramian_weighting.extra_repr()})"
