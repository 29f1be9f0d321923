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

from torch import Tensor

from torchjd.linalg import DualConeProjector

from ._dual_cone_utils import DualConeAggregator, DualConeWeighting
from ._preferences import preference_weights


class UPGradWeighting(DualConeWeighting):
    """
    Weights ``w = Σ_i argmin_{v >= p_i e_i} v^T G v`` of the Gramian ``G`` ``[m, m]`` (UPGrad).

    The ``m`` projections are solved by ``projector`` (its
    :meth:`~torchjd.linalg.DualConeProjector.sum_of_basis_projections`), exactly by default: then
    ``G w >= 0`` (the aggregation conflicts with no row) up to the projector's KKT tolerance, at
    any scale of ``G`` and for singular Gramians too. The weights are not differentiated through
    (the Gramian is detached).

    :param pref_vector: The preference weights ``p`` ``[m]``. ``None`` means ``1/m`` each.
        Settable.
    :param projector: The solver of the projections. ``None`` means
        :class:`~torchjd.linalg.ActiveSetDualConeProjector` (exact). To reproduce torchjd 0.18,
        whose default regularized the Gramian, pass :class:`~torchjd.linalg.QuadprogProjector`.
        Settable.

    >>> import torch
    >>> from torchjd.aggregation import UPGradWeighting
    >>> weights = UPGradWeighting()(torch.tensor([[18., -22.], [-22., 38.]]))
    >>> weights.round(decimals=4)
    tensor([1.1111, 0.7895])
    """

    def forward(self, stat: Tensor, /) -> Tensor:
        preferences = preference_weights(self.pref_vector, stat, 1.0 / stat.shape[0])
        # The bounds of the m projections are u^(i) = p_i e_i.
        return self.projector.sum_of_basis_projections(preferences, stat.detach())


class UPGrad(DualConeAggregator):
    """
    Aggregates the rows into the sum of their preference-weighted projections onto the dual cone of
    all the rows (UPGrad, arXiv 2406.16232): ``A(J) = Σ_i π_J(p_i J_i)``.

    With the default projector, the result has a non-negative inner product with every row (up to
    the projector's KKT tolerance), so a step along it does not increase any objective to first
    order. See :class:`UPGradWeighting` for the weights.

    :param pref_vector: The preference weights ``p`` ``[m]``. ``None`` means ``1/m`` each.
        Settable.
    :param projector: The solver of the projections. ``None`` means
        :class:`~torchjd.linalg.ActiveSetDualConeProjector` (exact);
        ``QuadprogProjector()`` reproduces torchjd 0.18's default. Settable.

    >>> import torch
    >>> from torchjd.aggregation import UPGrad
    >>> A = UPGrad()
    >>> A
    UPGrad(pref_vector=None, projector=ActiveSetDualConeProjector(tolerance=None))
    >>> A(torch.tensor([[-4., 1., 1.], [6., 1., 1.]])).round(decimals=4)
    tensor([0.2924, 1.9006, 1.9006])
    """

    def __init__(
        self, pref_vector: Tensor | None = None, projector: DualConeProjector | None = None
    ):
        super().__init__(UPGradWeighting(pref_vector, projector))
