"""
STCH: smooth Tchebycheff scalarization.

From `Smooth Tchebycheff Scalarization for Multi-Objective Optimization
<https://arxiv.org/abs/2402.19078>`_ (Lin et al., ICML 2024). The classical Tchebycheff
scalarization ``max_i λ_i (L_i - z*_i)`` can reach every Pareto optimal solution (linear
scalarizations cannot reach the non-convex parts of a Pareto front), but it is not smooth: its
gradient is that of the single worst objective. STCH replaces the max with its log-sum-exp
smoothing

``g_μ(L | λ) = μ log sum_i exp(λ_i (L_i - z*_i) / μ)``,

whose gradient is a softmax-weighted combination of all the objectives' gradients, the worst ones
weighted most. With ``T = max_i λ_i (L_i - z*_i)`` the Tchebycheff value,
``T <= g_μ <= T + μ log m``, so it tends to the Tchebycheff scalarization as the smoothing parameter
``μ`` goes to ``0`` and to an average-like objective as ``μ`` grows.
"""

import torch
from torch import Tensor

from torchjd._hyperparameter import Hyperparameter

from ._scalarizer_bases import (
    Scalarizer,
    _check_same_shape,
    _format_tensor,
    _like,
    _minus_reference,
    optional_tensor,
    optional_weights,
    positive_float,
)


class STCH(Scalarizer):
    """
    Returns ``mu * logsumexp(weights * (values - reference) / mu)``.

    It is computed as ``T + mu * logsumexp((y - T) / mu)`` with ``y = weights * (values -
    reference)`` and ``T = max(y)`` (the paper's Appendix B.1), which is the same value and
    gradient but never overflows, for any ``mu`` and scale of the values.

    :param mu: The smoothing parameter ``μ > 0`` (a temperature). Smaller values follow the worst
        objective more closely; ``1.0`` (default here, required in torchjd 0.18) is the value of
        the authors' multi-task code.
    :param weights: The preference ``λ``, non-negative, of the shape of the values. ``None``
        (default) means the uniform preference ``1/m`` of the paper's simplex ``Δ_{m-1}``.
    :param reference: The ideal point ``z*``, of the shape of the values, a value each loss is
        assumed to be unable to beat. ``None`` (default) means no shift (zeros, the ideal point of
        non-negative losses).

    ``mu``, ``weights`` and ``reference`` are settable attributes, validated on assignment.

    >>> import torch
    >>> from torchjd.scalarization import STCH
    >>> values = torch.tensor([1.0, 3.0])
    >>> STCH(mu=0.01, weights=torch.tensor([1.0, 1.0]))(values)  # close to max(values)
    tensor(3.)
    >>> STCH(mu=1.0)(values)  # uniform preference 1/2: smooth version of max(values) / 2
    tensor(1.8133)
    """

    mu = Hyperparameter(positive_float)
    weights = Hyperparameter(optional_weights)
    reference = Hyperparameter(optional_tensor)

    def __init__(
        self,
        mu: float = 1.0,
        weights: Tensor | None = None,
        reference: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.mu = mu
        self.weights = weights
        self.reference = reference

    def extra_repr(self) -> str:
        return (
            f"mu={self.mu}, weights={_format_tensor(self.weights)}, "
            f"reference={_format_tensor(self.reference)}"
        )

    def forward(self, values: Tensor, /) -> Tensor:
        shifted = _minus_reference(values, self.reference)
        if self.weights is None:
            weighted = shifted / values.numel()
        else:
            _check_same_shape(self.weights, values, "weights")
            weighted = _like(self.weights, values) * shifted
        weighted = weighted.flatten()
        # The shift by the (detached) maximum comes before the division by mu: dividing first
        # overflows for a small mu and large values (1e30 / 1e-10).
        top = weighted.detach().max()
        return top + self.mu * torch.logsumexp((weighted - top) / self.mu, dim=0)
