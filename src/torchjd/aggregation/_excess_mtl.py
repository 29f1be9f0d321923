"""
ExcessMTL: weights the objectives by their estimated excess risks (distance to their own
optimum), updated multiplicatively, so that the objectives furthest from convergence get more
weight while noisy, already-converged ones do not dominate.

The excess risk of objective ``i`` is estimated from a second-order expansion with a diagonal
curvature estimate built from the accumulated squared gradients (as in AdaGrad):

.. math::

    H_{i,t} = \\operatorname{diag}\\Big(\\sqrt{\\textstyle\\sum_{s \\le t} g_{i,s}^2 + ε}\\Big),
    \\qquad r_{i,t} = g_{i,t}^\\top H_{i,t}^{-1} g_{i,t}

The first call records ``r_{i,1}`` and keeps the weights at 1; later calls update

.. math::

    w_i \\leftarrow w_i \\exp\\left(η\\, \\frac{r_{i,t}}{r_{i,1}}\\right), \\qquad
    w \\leftarrow m\\, \\frac{w}{\\sum_j w_j}

(the normalization by ``r_{i,1}`` makes the objectives comparable; an objective whose first risk
is zero gets ``r_i / r_{i,1} = 0``). The aggregation is ``Jᵀ w``. The state lives in the buffers
``squared_gradient_sums`` ``[m, n]``, ``initial_risks`` ``[m]`` and ``weights`` ``[m]``;
``ε = 1e-7``.

Paper: `Robust Multi-Task Learning with Excess Risks <https://arxiv.org/abs/2402.02009>`_
(He et al., ICML 2024).
"""

import torch
from torch import Tensor

from torchjd._stateful import Stateful

from ._aggregator_bases import WeightedAggregator
from ._stateful_utils import LazyStateMixin, check_real, check_state_size
from ._weighting_bases import MatrixWeighting

_EPSILON = 1e-7


class ExcessMTLWeighting(LazyStateMixin, MatrixWeighting, Stateful):
    """
    Matrix weighting of :class:`ExcessMTL`: takes the matrix ``[m, n]``, updates its estimates
    and returns the weights ``[m]`` (they sum to ``m``).

    :param robust_step_size: The step size ``η > 0`` of the multiplicative weight update.

    >>> import torch
    >>> from torchjd.aggregation import ExcessMTLWeighting
    >>> weighting = ExcessMTLWeighting(robust_step_size=1.0)
    >>> weighting(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    tensor([1., 1.])
    >>> weighting(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    tensor([1.3395, 0.6605])
    """

    squared_gradient_sums: Tensor
    initial_risks: Tensor
    weights: Tensor

    def __init__(self, robust_step_size: float = 1e-2):
        super().__init__()
        self.robust_step_size = check_real(
            "robust_step_size", robust_step_size, 0.0, None, low_inclusive=False
        )
        self.register_buffer("squared_gradient_sums", torch.zeros(0))
        self.register_buffer("initial_risks", torch.zeros(0))
        self.register_buffer("weights", torch.zeros(0))

    def reset(self) -> None:
        """Forgets the curvature estimates, the initial risks and the weights."""
        self._empty_buffers("squared_gradient_sums", "initial_risks", "weights")

    @torch.no_grad()
    def forward(self, stat: Tensor, /) -> Tensor:
        matrix = stat
        m = matrix.shape[0]
        check_state_size(self.weights, m, "ExcessMTL")
        first_call = self.weights.numel() == 0
        if first_call:
            sums = matrix**2
        else:
            if self.squared_gradient_sums.shape != matrix.shape:
                raise ValueError(
                    f"The state of this ExcessMTL was built for a matrix of shape "
                    f"{tuple(self.squared_gradient_sums.shape)}, but the input has shape "
                    f"{tuple(matrix.shape)}. Call `reset()` before changing it."
                )
            sums = self.squared_gradient_sums.to(dtype=matrix.dtype, device=matrix.device)
            sums = sums + matrix**2
        risks = (matrix**2 / (sums + _EPSILON).sqrt()).sum(dim=1)

        if first_call:
            initial_risks = risks
            weights = torch.ones(m, dtype=matrix.dtype, device=matrix.device)
        else:
            initial_risks = self.initial_risks.to(dtype=matrix.dtype, device=matrix.device)
            weights = self.weights.to(dtype=matrix.dtype, device=matrix.device)
            ratios = torch.where(
                initial_risks > 0,
                risks / initial_risks.clamp(min=torch.finfo(matrix.dtype).tiny),
                torch.zeros_like(risks),
            )
            weights = weights * torch.exp(self.robust_step_size * ratios)
            weights = m * weights / weights.sum()
        if not bool(torch.isfinite(risks).all() and torch.isfinite(weights).all()):
            # The squares overflowed: a skipped step, which leaves the state as it was.
            return torch.full_like(risks, float("nan"))

        self.squared_gradient_sums = sums
        self.initial_risks = initial_risks
        self.weights = weights
        return weights.clone()

    def extra_repr(self) -> str:
        return f"robust_step_size={self.robust_step_size!r}"


class ExcessMTL(WeightedAggregator, Stateful):
    """
    Aggregator ``Jᵀ w`` whose weights grow with the estimated excess risks of the objectives
    (ExcessMTL). The weighting takes the matrix itself, as it accumulates per-coordinate squared
    gradients.

    :param robust_step_size: The step size ``η > 0`` of the multiplicative weight update.

    >>> import torch
    >>> from torchjd.aggregation import ExcessMTL
    >>> aggregator = ExcessMTL()
    >>> aggregator(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    tensor([1., 2.])
    """

    weighting: ExcessMTLWeighting

    def __init__(self, robust_step_size: float = 1e-2):
        super().__init__(ExcessMTLWeighting(robust_step_size=robust_step_size))

    def reset(self) -> None:
        """Forgets the curvature estimates, the initial risks and the weights."""
        self.weighting.reset()

    def extra_repr(self) -> str:
        return self.weighting.extra_repr()
