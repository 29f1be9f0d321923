"""
UPGrad: the average of the projections of every row onto the dual cone of all the rows.

From `Jacobian Descent For Multi-Objective Optimization <https://arxiv.org/abs/2406.16232>`_
(Quinton and Rey, 2024). With ``p`` the preference weights (``1/m`` each by default), the
aggregation is

``A(J) = Σ_i π_J(p_i J_i)``, ``π_J(x) = argmin_{y : J y >= 0} ||y - x||``,

the projection onto the dual cone of the rows. In weight space, ``π_J(J^T u) = J^T v`` with
``v = argmin_{v >= u} v^T G v`` and ``G = J J^T``, so the weights are
``w = Σ_i v^{(i)}`` with ``u^{(i)} = p_i e_i``. ``A(J)`` never conflicts with a row
(``J A(J) >= 0``) and, for ``p = 1/m``, it is the mean when no pair of rows conflicts.
"""

import torch
from torch import Tensor

from torchjd.linalg import ActiveSetDualConeProjector, DualConeProjector

from ._dual_cone_utils import (
    DualConeAggregator,
    DualConeWeighting,
    sum_of_basis_projections_regularized,
)
from ._preferences import preference_weights


class UPGradWeighting(DualConeWeighting):
    """
    Weights ``w = Σ_i argmin_{v >= p_i e_i} v^T G v`` of the Gramian ``G`` ``[m, m]`` (UPGrad).

    ``G`` is first normalized by its trace (replaced by zeros if the trace is below ``norm_eps``)
    and regularized into ``G / tr(G) + reg_eps I``; the ``m`` projections are then solved in one
    batched call of ``projector``. They are not differentiated through (the Gramian is detached).

    :param pref_vector: The preference weights ``p`` ``[m]``. ``None`` means ``1/m`` each.
    :param norm_eps: Below this trace, the Gramian is treated as zero.
    :param reg_eps: The ridge added to the normalized Gramian.
    :param projector: The solver of the projections. ``None`` means
        :class:`~torchjd.linalg.ActiveSetDualConeProjector` with its default tolerance.

    >>> import torch
    >>> from torchjd.aggregation import UPGradWeighting
    >>> weights = UPGradWeighting()(torch.tensor([[18., -22.], [-22., 38.]]))
    >>> weights.round(decimals=4)
    tensor([1.1109, 0.7894])
    """

    def forward(self, stat: Tensor, /) -> Tensor:
        stat = stat.detach()  # the weights are not differentiated through
        m = stat.shape[0]
        if self.pref_vector is not None:
            preferences = preference_weights(self.pref_vector, stat, 1.0 / m)
        elif m == 2 and type(self.projector) is ActiveSetDualConeProjector:
            if stat.device.type == "cpu":
                return _two_row_weights_on_cpu(stat, self.norm_eps, self.reg_eps)
            return _two_row_weights(stat, stat.new_full((2,), 0.5), self.norm_eps, self.reg_eps)
        else:
            preferences = None  # 1/m each, which the fast paths take without building it
        # The bounds of the m projections are u^(i) = p_i e_i.
        return sum_of_basis_projections_regularized(
            self.projector, stat, self.norm_eps, self.reg_eps, preferences
        )


def _two_row_weights(
    gramian: Tensor, preferences: Tensor, norm_eps: float, reg_eps: float
) -> Tensor:
    """
    Closed form of the UPGrad weights for ``m = 2`` and preferences ``p >= 0``, in a few operations.

    With ``H = G / tr(G) + reg_eps I`` the projection of ``u = p_1 e_1`` is
    ``v = (p_1, p_1 max(0, -H_12) / H_22)``: once ``v_1 = p_1`` is fixed, ``v_2`` minimizes
    ``v^T H v`` over ``v_2 >= 0``, and ``v_1`` cannot go below its bound while lowering the
    objective.
    Symmetrically for ``u = p_2 e_2``, so ``w = p + flip(p) max(0, -H_12) / diag(H)``.
    """

    diagonal = torch.diagonal(gramian)
    trace = diagonal.sum()
    # H_12 / H_ii = G_12 / (G_ii + reg_eps tr(G)), and H_12 = 0 when G is treated as zero.
    conflict = torch.where(trace >= norm_eps, (-gramian[0, 1]).clamp(min=0.0), 0.0)
    denominator = (diagonal + reg_eps * trace).clamp(min=torch.finfo(gramian.dtype).tiny)
    return torch.addcmul(preferences, preferences.flip(0), conflict / denominator)


def _two_row_weights_on_cpu(gramian: Tensor, norm_eps: float, reg_eps: float) -> Tensor:
    """
    :func:`_two_row_weights` with ``p = (1/2, 1/2)``, in Python floats: on CPU, reading four numbers
    costs less than the dozen tensor operations of the general form.
    """

    (g11, g12), (_, g22) = gramian.tolist()
    trace = g11 + g22
    conflict = max(-g12, 0.0) if trace >= norm_eps else 0.0
    w1 = 0.5 + 0.5 * conflict / max(g11 + reg_eps * trace, 1e-300)
    w2 = 0.5 + 0.5 * conflict / max(g22 + reg_eps * trace, 1e-300)
    return torch.tensor([w1, w2], dtype=gramian.dtype)


class UPGrad(DualConeAggregator):
    """
    Aggregates the rows into the sum of their preference-weighted projections onto the dual cone of
    all the rows (UPGrad, arXiv 2406.16232): ``A(J) = Σ_i π_J(p_i J_i)``.

    The result has a non-negative inner product with every row, so a step along it does not
    increase any objective to first order. See :class:`UPGradWeighting` for the weights.

    :param pref_vector: The preference weights ``p`` ``[m]``. ``None`` means ``1/m`` each.
    :param norm_eps: Below this trace, the Gramian is treated as zero.
    :param reg_eps: The ridge added to the trace-normalized Gramian.
    :param projector: The solver of the projections. ``None`` means
        :class:`~torchjd.linalg.ActiveSetDualConeProjector` with its default tolerance.

    >>> import torch
    >>> from torchjd.aggregation import UPGrad
    >>> A = UPGrad()
    >>> A
    UPGrad(pref_vector=None, norm_eps=0.0001, reg_eps=0.0001,
           projector=ActiveSetDualConeProjector(tolerance=None))
    >>> A(torch.tensor([[-4., 1., 1.], [6., 1., 1.]])).round(decimals=4)
    tensor([0.2929, 1.9004, 1.9004])
    """

    def __init__(
        self,
        pref_vector: Tensor | None = None,
        norm_eps: float = 0.0001,
        reg_eps: float = 0.0001,
        projector: DualConeProjector | None = None,
    ):
        super().__init__(UPGradWeighting(pref_vector, norm_eps, reg_eps, projector))
