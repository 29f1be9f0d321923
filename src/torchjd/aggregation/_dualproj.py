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

from ._dual_cone_utils import (
    DualConeAggregator,
    DualConeWeighting,
    project_regularized,
)
from ._preferences import preference_weights


class DualProjWeighting(DualConeWeighting):
    """
    Weights ``w = argmin_{v >= p} v^T G v`` of the Gramian ``G`` ``[m, m]`` (DualProj).

    ``G`` is first normalized by its trace (replaced by zeros if the trace is below ``norm_eps``)
    and regularized into ``G / tr(G) + reg_eps I``. They are not differentiated through (the
    Gramian is detached).

    :param pref_vector: The preference weights ``p`` ``[m]``. ``None`` means ``1/m`` each.
    :param norm_eps: Below this trace, the Gramian is treated as zero.
    :param reg_eps: The ridge added to the normalized Gramian.
    :param projector: The solver of the projection. ``None`` means
        :class:`~torchjd.linalg.ActiveSetDualConeProjector` with its default tolerance.

    >>> import torch
    >>> from torchjd.aggregation import DualProjWeighting
    >>> weights = DualProjWeighting()(torch.tensor([[18., -22.], [-22., 38.]]))
    >>> weights.round(decimals=4)
    tensor([0.6109, 0.5000])
    """

    def forward(self, stat: Tensor, /) -> Tensor:
        stat = stat.detach()  # the weights are not differentiated through
        preferences = preference_weights(self.pref_vector, stat, 1.0 / stat.shape[0])
        return project_regularized(self.projector, stat, self.norm_eps, self.reg_eps, preferences)


class DualProj(DualConeAggregator):
    """
    Aggregates the rows into the projection of their (preference-weighted) mean onto the dual cone
    of the rows (GEM's projection, arXiv 1706.08840): ``A(J) = π_J(J^T p)``.

    The result has a non-negative inner product with every row. See :class:`DualProjWeighting` for
    the weights.

    :param pref_vector: The preference weights ``p`` ``[m]``. ``None`` means ``1/m`` each.
    :param norm_eps: Below this trace, the Gramian is treated as zero.
    :param reg_eps: The ridge added to the trace-normalized Gramian.
    :param projector: The solver of the projection. ``None`` means
        :class:`~torchjd.linalg.ActiveSetDualConeProjector` with its default tolerance.

    >>> import torch
    >>> from torchjd.aggregation import DualProj
    >>> A = DualProj()
    >>> A
    DualProj(pref_vector=None, norm_eps=0.0001, reg_eps=0.0001,
             projector=ActiveSetDualConeProjector(tolerance=None))
    >>> A(torch.tensor([[-4., 1., 1.], [6., 1., 1.]])).round(decimals=4)
    tensor([0.5563, 1.1109, 1.1109])
    """

    def __init__(
        self,
        pref_vector: Tensor | None = None,
        norm_eps: float = 0.0001,
        reg_eps: float = 0.0001,
        projector: DualConeProjector | None = None,
    ):
        super().__init__(DualProjWeighting(pref_vector, norm_eps, reg_eps, projector))
