"""
CR-MOGM (correlation-reduced multi-objective gradient manipulation): smooths the weights of
another weighting with a moving average, which reduces the bias that the correlation between the
stochastic weights and the stochastic gradients causes.

.. math::

    w_t = (1 - α)\\, w_{t-1} + α\\, \\operatorname{inner}(G_t)

where ``inner`` is the wrapped weighting (in the paper: MGDA, PCGrad, CAGrad, ...). The first call
has no previous weights and returns ``inner(G_1)`` itself. The previous weights are kept in the
buffer ``weights`` ``[m]``.

Paper: `On the Convergence of Stochastic Multi-Objective Gradient Manipulation and Beyond
<https://openreview.net/forum?id=ScwfQ7hdwyP>`_ (Zhou et al., NeurIPS 2022).
"""

import torch
from torch import Tensor

from torchjd._stateful import Stateful

from ._aggregator_bases import GramianWeightedAggregator
from ._stateful_utils import LazyStateMixin, check_real, check_state_size
from ._weighting_bases import Weighting


class CRMOGMWeighting(LazyStateMixin, Weighting, Stateful):
    """
    Weighting that returns a moving average of the weights of ``weighting`` (CR-MOGM).

    It passes its input unchanged to ``weighting``, so it takes whatever that weighting takes: a
    Gramian ``[m, m]`` for a Gramian-based one, the matrix ``[m, n]`` for a matrix-based one.
    The averaged weights are constants: no gradient flows through them.

    :param weighting: The weighting whose weights are averaged. There is no default: the paper
        wraps several methods (MGDA in its experiments), and the choice is the user's.
    :param alpha: The averaging rate ``α ∈ (0, 1]``; ``1`` gives back ``weighting``.

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

    def __init__(self, weighting: Weighting, alpha: float = 0.1):
        super().__init__()
        if not isinstance(weighting, Weighting):
            raise TypeError(
                f"Parameter `weighting` should be a Weighting. Found `{type(weighting).__name__}`."
            )
        self.weighting = weighting
        self.alpha = check_real("alpha", alpha, 0.0, 1.0, low_inclusive=False)
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
            if self.weights.numel() == 0:
                averaged = new_weights.clone()
            else:
                previous = self.weights.to(dtype=new_weights.dtype, device=new_weights.device)
                averaged = (1.0 - self.alpha) * previous + self.alpha * new_weights
            self.weights = averaged
        return averaged.clone()

    def extra_repr(self) -> str:
        return f"weighting={self.weighting!r}, alpha={self.alpha!r}"


class CRMOGM(GramianWeightedAggregator, Stateful):
    """
    Aggregator ``Jᵀ w_t`` whose weights are a moving average of those of a Gramian-based
    ``weighting`` (CR-MOGM): ``w_t = (1 - α) w_{t-1} + α weighting(J Jᵀ)``.

    :param weighting: The Gramian-based weighting whose weights are averaged (required).
    :param alpha: The averaging rate ``α ∈ (0, 1]``.

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

    def __init__(self, weighting: Weighting, alpha: float = 0.1):
        super().__init__(CRMOGMWeighting(weighting, alpha=alpha))

    @property
    def alpha(self) -> float:
        return self.gramian_weighting.alpha

    def reset(self) -> None:
        """Forgets the averaged weights (and resets the wrapped weighting if it can)."""
        self.gramian_weighting.reset()

    def __repr__(self) -> str:
        return f"CRMOGM({self.gramian_weighting.extra_repr()})"
