"""
DualProj: the projection of the (preference-weighted) mean of the rows onto their dual cone.

The projection step of `Gradient Episodic Memory for Continual Learning
<https://arxiv.org/abs/1706.08840>`_ (GEM, Lopez-Paz and Ranzato, NeurIPS 2017), applied to the
rows of the Jacobian. With ``p`` the preference weights (``1/m`` each by default):

``A(J) = π_J(J^T p)``, ``π_J(x) = argmin_{y : J y >= 0} ||y - x||``.

In weight space, ``π_J(J^T p) = J^T v`` with ``v = argmin_{v >= p} v^T G v``, ``G = J J^T``.
"""

from torch import Tensor

from torchjd.linalg import DualConeProjector

from ._dual_cone_utils import DualConeAggregator, DualConeWeighting
from ._preferences import preference_weights


class DualProjWeighting(DualConeWeighting):
    """
    Weights ``w = argmin_{v >= p} v^T G v`` of the Gramian ``G`` ``[m, m]`` (DualProj).

    The projection is solved by ``projector``, exactly by default: then ``G w >= 0`` up to the
    projector's KKT tolerance, at any scale of ``G`` and for singular Gramians too. The weights
    are not differentiated through (the Gramian is detached).

    :param pref_vector: The preference weights ``p`` ``[m]``. ``None`` means ``1/m`` each.
        Settable.
    :param projector: The solver of the projection. ``None`` means
        :class:`~torchjd.linalg.ActiveSetDualConeProjector` (exact). To reproduce torchjd 0.18,
        whose default regularized the Gramian, pass :class:`~torchjd.linalg.QuadprogProjector`.
        Settable.

    >>> import torch
    >>> from torchjd.aggregation import DualProjWeighting
    >>> weights = DualProjWeighting()(torch.tensor([[18., -22.], [-22., 38.]]))
    >>> weights.round(decimals=4)
    tensor([0.6111, 0.5000])
    """

    def forward(self, stat: Tensor, /) -> Tensor:
        preferences = preference_weights(self.pref_vector, stat, 1.0 / stat.shape[0])
        return self.projector(preferences, stat.detach())


class DualProj(DualConeAggregator):
    """
    Aggregates the rows into the projection of their (preference-weighted) mean onto the dual cone
    of the rows (GEM's projection, arXiv 1706.08840): ``A(J) = π_J(J^T p)``.

    With the default projector, the result has a non-negative inner product with every row (up to
    the projector's KKT tolerance). See :class:`DualProjWeighting` for the weights.

    :param pref_vector: The preference weights ``p`` ``[m]``. ``None`` means ``1/m`` each.
        Settable.
    :param projector: The solver of the projection. ``None`` means
        :class:`~torchjd.linalg.ActiveSetDualConeProjector` (exact);
        ``QuadprogProjector()`` reproduces torchjd 0.18's default. Settable.

    >>> import torch
    >>> from torchjd.aggregation import DualProj
    >>> A = DualProj()
    >>> A
    DualProj(pref_vector=None, projector=ActiveSetDualConeProjector(tolerance=None))
    >>> A(torch.tensor([[-4., 1., 1.], [6., 1., 1.]])).round(decimals=4)
    tensor([0.5556, 1.1111, 1.1111])
    """

    def __init__(
        self, pref_vector: Tensor | None = None, projector: DualConeProjector | None = None
    ):
        super().__init__(DualProjWeighting(pref_vector, projector))
