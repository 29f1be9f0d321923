"""
ConFIG: the direction with equal cosine to every row, scaled by the rows' total projection.

From `ConFIG: Towards Conflict-free Training of Physics Informed Neural Networks
<https://arxiv.org/abs/2408.11104>`_ (Liu et al., ICLR 2025). With the unit rows
``u_i = g_i / ||g_i||`` stacked in ``U`` ``[m, n]``,

``ĝ = U⁺ w`` (``U⁺`` the pseudo-inverse, ``w`` the preference vector, ones by default),
``g_u = ĝ / ||ĝ||`` and the aggregation is ``(Σ_i g_i · g_u) g_u``.

``U ĝ = w`` when the rows are linearly independent, so ``g_u`` has the same cosine with every row
(for ``w = 1``) and is conflict-free. Zero rows are left as zero rows of ``U``; a zero ``ĝ`` (``w``
orthogonal to the row space of ``U``, e.g. on two antiparallel rows) gives the exact zero
aggregation.
"""

import torch
from torch import Tensor

from ._aggregator_bases import Aggregator
from ._checks import Hyperparameter, optional_vector
from ._preferences import preference_weights

# U U⁺ w below this many eps (times m ||w||) is rounding noise of a zero projection.
_NOISE_FACTOR = 16


class ConFIG(Aggregator):
    """
    Aggregates the rows with ConFIG: along ``U⁺ w`` normalized, with length ``Σ_i g_i · g_u``.

    It needs the matrix itself (the pseudo-inverse of its normalized rows) and is differentiable
    with respect to it.

    :param pref_vector: Preference vector ``w`` ``[m]``: the cosines of the direction with the rows
        are proportional to it. ``None`` means ones. Its length must match the number of rows.

    >>> import torch
    >>> from torchjd.aggregation import ConFIG
    >>> A = ConFIG()
    >>> A
    ConFIG(pref_vector=None)
    >>> A(torch.tensor([[2., 0.], [0., 1.]]))
    tensor([1.5000, 1.5000])
    """

    pref_vector = Hyperparameter(optional_vector)

    def __init__(self, pref_vector: Tensor | None = None):
        super().__init__()
        self.pref_vector = pref_vector

    def extra_repr(self) -> str:
        pref_vector = None if self.pref_vector is None else self.pref_vector.tolist()
        return f"pref_vector={pref_vector}"

    def forward(self, matrix: Tensor, /) -> Tensor:
        preferences = preference_weights(self.pref_vector, matrix, 1.0)

        norms = torch.linalg.vector_norm(matrix, dim=1, keepdim=True)
        units = matrix / torch.where(norms > 0, norms, torch.ones_like(norms))  # U, [m, n]
        direction = torch.linalg.pinv(units) @ preferences  # U⁺ w, [n]
        direction_norm = torch.linalg.vector_norm(direction)
        # U U⁺ w is the projection of w onto the range of U. When w is orthogonal to that range
        # (e.g. two antiparallel rows and w = 1), the exact U⁺ w is 0 and what pinv returns is
        # rounding noise: normalizing it would give an arbitrary, conflicting direction.
        projected_norm = torch.linalg.vector_norm(units @ direction)
        noise_level = _NOISE_FACTOR * units.shape[0] * torch.finfo(matrix.dtype).eps
        is_zero = projected_norm <= noise_level * torch.linalg.vector_norm(preferences)
        unit_direction = direction / torch.where(
            is_zero, torch.ones_like(direction_norm), direction_norm
        )
        length = (matrix @ unit_direction).sum()
        return length * unit_direction
