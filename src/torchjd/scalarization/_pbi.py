"""
PBI: the penalty boundary intersection scalarization of MOEA/D.

From `MOEA/D: A Multiobjective Evolutionary Algorithm Based on Decomposition
<https://doi.org/10.1109/TEVC.2007.892759>`_ (Zhang and Li, IEEE Transactions on Evolutionary
Computation 2007). With ``u = λ / ||λ||`` the unit preference direction and ``d = L - z*`` the
losses measured from the ideal point,

``d1 = |d · u|`` (how far along the preference direction the losses are, to be decreased) and
``d2 = ||d - d1 u||`` (how far the losses are from the preference ray),

and the scalarization is ``g_pbi(L | λ, z*) = d1 + θ d2``. The penalty ``θ`` pulls the solution
towards the ray through ``z*`` with direction ``λ``, so different preferences reach different,
evenly spread parts of the Pareto front, including its non-convex parts.
"""

import torch
from torch import Tensor

from ._scalarizer_bases import (
    Scalarizer,
    _check_matches_losses,
    _check_non_negative_float,
    _format_tensor,
    _register_preference_and_ideal_point,
    _subtract_ideal_point,
)


class PBI(Scalarizer):
    """
    Returns ``d1 + theta * d2``, the penalty boundary intersection of the losses ``[m]``.

    :param theta: The penalty ``θ >= 0`` on the distance to the preference ray. The paper uses
        ``5``.
    :param preference: The preference direction ``λ`` ``[m]``, non-negative and not all zero; only
        its direction matters. ``None`` (default) means the uniform direction.
    :param ideal_point: The ideal point ``z*`` ``[m]``. ``None`` (default) means zeros, the ideal
        point of non-negative losses.

    >>> import torch
    >>> from torchjd.scalarization import PBI
    >>> PBI()(torch.tensor([3.0, 3.0]))  # on the ray: d1 = 3 sqrt(2), d2 = 0
    tensor(4.2426)
    >>> PBI(theta=1.0, preference=torch.tensor([1.0, 0.0]))(torch.tensor([3.0, 4.0]))  # 3 + 4
    tensor(7.)
    """

    preference: Tensor | None
    ideal_point: Tensor | None

    def __init__(
        self,
        theta: float = 5.0,
        preference: Tensor | None = None,
        ideal_point: Tensor | None = None,
    ):
        super().__init__()
        _check_non_negative_float(theta, "theta")
        self.theta = theta
        _register_preference_and_ideal_point(self, preference, ideal_point)

    def extra_repr(self) -> str:
        return (
            f"theta={self.theta}, preference={_format_tensor(self.preference)}, "
            f"ideal_point={_format_tensor(self.ideal_point)}"
        )

    def scalarize(self, losses: Tensor) -> Tensor:
        shifted = _subtract_ideal_point(losses, self.ideal_point)
        if self.preference is None:
            direction = torch.ones_like(losses)
        else:
            _check_matches_losses(self.preference, losses, "preference")
            direction = self.preference.to(dtype=losses.dtype, device=losses.device)
        direction = direction / torch.linalg.vector_norm(direction)
        d1 = torch.abs(shifted @ direction)
        d2 = torch.linalg.vector_norm(shifted - d1 * direction)
        return d1 + self.theta * d2
