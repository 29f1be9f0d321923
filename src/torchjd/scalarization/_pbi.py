"""
PBI: the penalty boundary intersection scalarization of MOEA/D.

From `MOEA/D: A Multiobjective Evolutionary Algorithm Based on Decomposition
<https://doi.org/10.1109/TEVC.2007.892759>`_ (Zhang and Li, IEEE Transactions on Evolutionary
Computation 2007). With ``u = λ / ||λ||`` the unit preference direction and ``d = L - z*`` the
losses measured from the ideal point,

``d1 = d · u`` (how far along the preference direction the losses are, to be decreased) and
``d2 = ||d - d1 u||`` (how far the losses are from the preference ray),

and the scalarization is ``g_pbi(L | λ, z*) = d1 + θ d2``. The penalty ``θ`` pulls the solution
towards the ray through ``z*`` with direction ``λ``, so different preferences reach different,
evenly spread parts of the Pareto front, including its non-convex parts. (The paper writes
``d1`` as the norm of the projection; for losses above ``z*`` and a non-negative ``λ`` it is the
same, and the signed projection, as in torchjd 0.18, keeps ``d1 u`` the foot of the perpendicular
everywhere.)
"""

from torch import Tensor

from torchjd._hyperparameter import Hyperparameter

from ._scalarizer_bases import (
    Scalarizer,
    _check_same_shape,
    _format_tensor,
    _like,
    _minus_reference,
    _norm,
    non_negative_float,
    optional_tensor,
    optional_weights,
)


class PBI(Scalarizer):
    """
    Returns ``d1 + theta * d2``, the penalty boundary intersection of the values (flattened).

    ``d2`` is computed without overflow or underflow at any scale, and its gradient is taken as
    ``0`` where the values lie exactly on the preference ray (where the norm is not
    differentiable), so the result is exact there.

    :param theta: The penalty ``θ >= 0`` on the distance to the preference ray. The paper uses
        ``5`` (default here, required in torchjd 0.18).
    :param weights: The preference direction ``λ``, non-negative and not all zero, of the shape of
        the values; only its direction matters. ``None`` (default here, required in torchjd 0.18)
        means the uniform direction.
    :param reference: The reference (ideal) point ``z*``, of the shape of the values, a lower bound
        on them. ``None`` (default) means zeros, the ideal point of non-negative losses.

    ``theta``, ``weights`` and ``reference`` are settable attributes, validated on assignment.

    >>> import torch
    >>> from torchjd.scalarization import PBI
    >>> PBI()(torch.tensor([3.0, 3.0]))  # on the ray: d1 = 3 sqrt(2), d2 = 0
    tensor(4.2426)
    >>> PBI(theta=1.0, weights=torch.tensor([1.0, 0.0]))(torch.tensor([3.0, 4.0]))  # 3 + 4
    tensor(7.)
    """

    theta = Hyperparameter(non_negative_float)
    weights = Hyperparameter(optional_weights)
    reference = Hyperparameter(optional_tensor)

    def __init__(
        self,
        theta: float = 5.0,
        weights: Tensor | None = None,
        reference: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.theta = theta
        self.weights = weights
        self.reference = reference

    def extra_repr(self) -> str:
        return (
            f"theta={self.theta}, weights={_format_tensor(self.weights)}, "
            f"reference={_format_tensor(self.reference)}"
        )

    def forward(self, values: Tensor, /) -> Tensor:
        shifted = _minus_reference(values, self.reference)
        if self.weights is None:
            direction = values.new_ones(values.numel())
        else:
            _check_same_shape(self.weights, values, "weights")
            direction = _like(self.weights, values).flatten()
        direction = direction / _norm(direction)
        shifted = shifted.flatten()
        d1 = shifted @ direction
        d2 = _norm(shifted - d1 * direction)
        return d1 + self.theta * d2
