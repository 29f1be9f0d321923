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

from ._scalarizer_bases import (
    Scalarizer,
    _check_matches_losses,
    _check_positive_float,
    _format_tensor,
    _register_preference_and_ideal_point,
    _subtract_ideal_point,
)


class STCH(Scalarizer):
    """
    Returns ``mu * logsumexp(preference * (losses - ideal_point) / mu)``.

    :param mu: The smoothing parameter ``μ > 0`` (a temperature). Smaller values follow the worst
        objective more closely; ``1.0`` is the default of the authors' multi-task code.
    :param preference: The preference ``λ`` ``[m]``, non-negative. ``None`` (default) means the
        uniform preference ``1/m`` of the paper's simplex ``Δ_{m-1}``. Cast to the losses' dtype
        and device.
    :param ideal_point: The ideal point ``z*`` ``[m]``, a value each loss is assumed to be unable
        to beat. ``None`` (default) means zeros, the ideal point of non-negative losses. Cast to
        the losses' dtype and device.

    >>> import torch
    >>> from torchjd.scalarization import STCH
    >>> losses = torch.tensor([1.0, 3.0])
    >>> STCH(mu=0.01, preference=torch.tensor([1.0, 1.0]))(losses)  # close to max(losses)
    tensor(3.)
    >>> STCH(mu=1.0)(losses)  # uniform preference 1/2: smooth version of max(losses) / 2
    tensor(1.8133)
    """

    preference: Tensor | None
    ideal_point: Tensor | None

    def __init__(
        self,
        mu: float = 1.0,
        preference: Tensor | None = None,
        ideal_point: Tensor | None = None,
    ):
        super().__init__()
        _check_positive_float(mu, "mu")
        self.mu = mu
        _register_preference_and_ideal_point(self, preference, ideal_point)

    def extra_repr(self) -> str:
        return (
            f"mu={self.mu}, preference={_format_tensor(self.preference)}, "
            f"ideal_point={_format_tensor(self.ideal_point)}"
        )

    def scalarize(self, losses: Tensor) -> Tensor:
        shifted = _subtract_ideal_point(losses, self.ideal_point)
        if self.preference is None:
            weighted = shifted / losses.shape[0]
        else:
            _check_matches_losses(self.preference, losses, "preference")
            weighted = self.preference.to(dtype=losses.dtype, device=losses.device) * shifted
        return self.mu * torch.logsumexp(weighted / self.mu, dim=0)
