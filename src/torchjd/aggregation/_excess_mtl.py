"""
ExcessMTL: weights the objectives by their estimated excess risks (distance to their own
optimum), updated multiplicatively, so that the objectives furthest from convergence get more
weight while noisy, already-converged ones do not dominate.

The excess risk of objective ``i`` is estimated from a second-order expansion with a diagonal
curvature estimate built from the accumulated squared gradients (as in AdaGrad):

.. math::

    H_{i,t} = \\operatorname{diag}\\Big(\\sqrt{\\textstyle\\sum_{s \\le t} g_{i,s}^2 + ε}\\Big),
    \\qquad r_{i,t} = g_{i,t}^\\top H_{i,t}^{-1} g_{i,t}

The weights start at ``1/m`` and stay there during the first ``n_warmup_steps`` calls, whose
risks are averaged into the baseline ``r̄_i``. Every later call updates them by an exponentiated
gradient step (the paper's Equation 9) and normalizes them to sum to one:

.. math::

    w_i \\leftarrow w_i \\exp\\left(η\\, \\frac{r_{i,t}}{r̄_i + ε}\\right), \\qquad
    w \\leftarrow \\frac{w}{\\sum_j w_j}

With ``n_warmup_steps = 0``, as in the authors' code and torchjd 0.18, the first call's risks
become the baseline and that first update uses them unnormalized. ``ε = 1e-7``. The update is
computed in log space, so large risks saturate the weights instead of overflowing. The aggregation
is ``Jᵀ w``. The state lives in buffers (``squared_gradient_sums`` ``[m, n]``, ``warmup_risks``,
``baseline_risks`` and ``weights`` ``[m]``, ``step``).

Paper: `Robust Multi-Task Learning with Excess Risks <https://arxiv.org/abs/2402.02009>`_
(He et al., ICML 2024).
"""

import torch
from torch import Tensor

from torchjd._stateful import Stateful

from ._aggregator_bases import WeightedAggregator
from ._checks import Delegated, Hyperparameter, int_at_least, real_in
from ._stateful_utils import LazyStateMixin, check_state_size
from ._weighting_bases import MatrixWeighting

_EPSILON = 1e-7


class ExcessMTLWeighting(LazyStateMixin, MatrixWeighting, Stateful):
    """
    Matrix weighting of :class:`ExcessMTL`: takes the matrix ``[m, n]``, updates its estimates
    and returns the weights ``[m]`` (non-negative, summing to one).

    :param robust_step_size: The step size ``η > 0`` of the multiplicative weight update.
    :param n_warmup_steps: The number of first calls that keep the weights at ``1/m`` and average
        their risks into the baseline. ``0``: the first call's risks are the baseline.

    >>> import torch
    >>> from torchjd.aggregation import ExcessMTLWeighting
    >>> weighting = ExcessMTLWeighting(n_warmup_steps=1)
    >>> weighting(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    tensor([0.5000, 0.5000])
    >>> weighting(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    tensor([0.6698, 0.3302])
    """

    squared_gradient_sums: Tensor
    warmup_risks: Tensor
    baseline_risks: Tensor
    weights: Tensor
    step: Tensor
    robust_step_size = Hyperparameter(real_in(0.0, low_inclusive=False))
    n_warmup_steps = Hyperparameter(int_at_least(0))

    def __init__(self, robust_step_size: float = 1.0, n_warmup_steps: int = 0):
        super().__init__()
        self.robust_step_size = robust_step_size
        self.n_warmup_steps = n_warmup_steps
        for name in ("squared_gradient_sums", "warmup_risks", "baseline_risks", "weights"):
            self.register_buffer(name, torch.zeros(0))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def reset(self) -> None:
        """Forgets the curvature estimates, the risks and the weights, and restarts the warmup."""
        self._empty_buffers("squared_gradient_sums", "warmup_risks", "baseline_risks", "weights")
        self.step.zero_()

    @torch.no_grad()
    def forward(self, matrix: Tensor, /) -> Tensor:
        m = matrix.shape[0]
        check_state_size(self.weights, m, "ExcessMTL")
        like = {"dtype": matrix.dtype, "device": matrix.device}
        if self.weights.numel() == 0:
            sums = matrix**2
            weights = torch.full((m,), 1.0 / m, **like)
            warmup_risks = torch.zeros(m, **like)
        else:
            if self.squared_gradient_sums.shape != matrix.shape:
                raise ValueError(
                    f"The state of this ExcessMTL was built for a matrix of shape "
                    f"{tuple(self.squared_gradient_sums.shape)}, but the input has shape "
                    f"{tuple(matrix.shape)}. Call `reset()` before changing it."
                )
            sums = self.squared_gradient_sums.to(**like) + matrix**2
            weights = self.weights.to(**like)
            warmup_risks = self.warmup_risks.to(**like)
        risks = (matrix**2 / (sums + _EPSILON).sqrt()).sum(dim=1)
        if not bool(torch.isfinite(risks).all()):
            # The squares overflowed: a skipped step, which leaves the state as it was.
            return torch.full_like(risks, float("nan"))
        step = int(self.step)
        self.step += 1
        self.squared_gradient_sums = sums

        if step < self.n_warmup_steps:
            self.warmup_risks = warmup_risks + risks
            self.weights = weights
            return weights.clone()
        if self.baseline_risks.numel() == 0:
            if self.n_warmup_steps > 0:
                self.baseline_risks = warmup_risks / self.n_warmup_steps
                ratios = risks / (self.baseline_risks + _EPSILON)
            else:
                self.baseline_risks = risks
                ratios = risks
        else:
            ratios = risks / (self.baseline_risks.to(**like) + _EPSILON)
        weights = torch.softmax(weights.log() + self.robust_step_size * ratios, dim=0)
        self.warmup_risks = warmup_risks
        self.weights = weights
        return weights.clone()

    def extra_repr(self) -> str:
        return f"robust_step_size={self.robust_step_size!r}, n_warmup_steps={self.n_warmup_steps!r}"


class ExcessMTL(WeightedAggregator, Stateful):
    """
    Aggregator ``Jᵀ w`` whose weights grow with the estimated excess risks of the objectives
    (ExcessMTL). The weighting takes the matrix itself, as it accumulates per-coordinate squared
    gradients.

    :param robust_step_size: The step size ``η > 0`` of the multiplicative weight update.
    :param n_warmup_steps: The number of first calls that keep the weights at ``1/m`` and average
        their risks into the baseline.

    >>> import torch
    >>> from torchjd.aggregation import ExcessMTL
    >>> aggregator = ExcessMTL(n_warmup_steps=1)
    >>> aggregator(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    tensor([0.5000, 1.0000])
    """

    robust_step_size = Delegated("weighting")
    n_warmup_steps = Delegated("weighting")

    def __init__(self, robust_step_size: float = 1.0, n_warmup_steps: int = 0):
        super().__init__(ExcessMTLWeighting(robust_step_size, n_warmup_steps))

    def reset(self) -> None:
        """Forgets the curvature estimates, the risks and the weights, and restarts the warmup."""
        self.weighting.reset()

    def extra_repr(self) -> str:
        return self.weighting.extra_repr()
