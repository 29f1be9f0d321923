"""
GradDrop: randomly drop, coordinate by coordinate, the gradients of the minority sign.

From `Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout
<https://arxiv.org/abs/2010.06808>`_ (Chen et al., NeurIPS 2020). For each coordinate ``k`` of the
rows ``g_i`` ``[n]``, the gradient positive sign purity is

``P_k = 1/2 (1 + Σ_i g_ik / Σ_i |g_ik|)`` (``1/2`` where the column is zero),

one ``U_k ~ Uniform(0, 1)`` is drawn per coordinate, and the masks keep the positive entries where
``f(P_k) > U_k`` and the negative entries where ``f(P_k) < U_k``:

``M_ik = 1[f(P_k) > U_k] 1[g_ik > 0] + 1[f(P_k) < U_k] 1[g_ik < 0]``,

with ``f`` a monotonically increasing map of ``[0, 1]`` onto itself, odd around ``(1/2, 1/2)``
(the identity by default, as in the paper's experiments).

With leak parameters ``ℓ_i ∈ [0, 1]``, the aggregation is ``Σ_i (ℓ_i + (1 - ℓ_i) M_i) ⊙ g_i``.
"""

from collections.abc import Callable

import torch
from torch import Tensor

from ._aggregator_bases import Aggregator
from ._checks import Hyperparameter, optional_vector


def _identity(x: Tensor) -> Tensor:
    return x


def _check_f(name: str, f: object) -> Callable[[Tensor], Tensor]:
    if not callable(f):
        raise TypeError(f"Parameter `{name}` should be callable. Found `{type(f).__name__}`.")
    return f  # type: ignore[return-value]


def _check_leak(name: str, leak: object) -> Tensor | None:
    leak = optional_vector(name, leak)
    if leak is not None and not bool(((leak >= 0) & (leak <= 1)).all()):
        raise ValueError(f"Parameter `{name}` should have values in [0, 1]. Found {leak}.")
    return leak


class GradDrop(Aggregator):
    """
    Aggregates the rows by summing them after Gradient Sign Dropout.

    The uniform draws come from torch's global generator. The masks are drawn without tracking
    gradients; the masked sum is differentiable with respect to the matrix.

    :param f: The activation applied to the sign purity before comparing it to the uniform draws,
        elementwise on a tensor (the identity by default).
    :param leak: Optional tensor ``[m]`` of leak parameters in ``[0, 1]``: the fraction of row
        ``i`` that always passes, whatever its sign. ``None`` means no leak (all zeros), the
        paper's default. Its length must match the number of rows of the aggregated matrix.

    >>> import torch
    >>> from torchjd.aggregation import GradDrop
    >>> A = GradDrop()
    >>> A
    GradDrop(f=_identity, leak=None)
    >>> # The first coordinate is pure (P = 1), the second is zero: no randomness involved.
    >>> A(torch.tensor([[1., 0.], [2., 0.]]))
    tensor([3., 0.])
    """

    f = Hyperparameter(_check_f)
    leak = Hyperparameter(_check_leak)

    def __init__(self, f: Callable[[Tensor], Tensor] = _identity, leak: Tensor | None = None):
        super().__init__()
        self.f = f
        self.leak = leak

    def extra_repr(self) -> str:
        leak = None if self.leak is None else self.leak.tolist()
        f = getattr(self.f, "__name__", repr(self.f))
        return f"f={f}, leak={leak}"

    def forward(self, matrix: Tensor, /) -> Tensor:
        m = matrix.shape[0]
        if self.leak is not None and self.leak.shape[0] != m:
            raise ValueError(
                f"Parameter `leak` should have one value per row of the matrix ({m}). Found "
                f"{self.leak.shape[0]} values."
            )
        with torch.no_grad():
            column_sums = matrix.sum(dim=0)
            column_abs_sums = matrix.abs().sum(dim=0)
            safe_abs_sums = torch.where(
                column_abs_sums > 0, column_abs_sums, torch.ones_like(column_abs_sums)
            )
            purity = 0.5 * (1.0 + column_sums / safe_abs_sums)  # [n], 1/2 on zero columns
            purity = self.f(purity)
            uniform = torch.rand(matrix.shape[1], dtype=matrix.dtype, device=matrix.device)
            masks = ((purity > uniform) & (matrix > 0)) | ((purity < uniform) & (matrix < 0))
            masks = masks.to(matrix.dtype)  # [m, n]
            if self.leak is not None:
                leak = self.leak.to(dtype=matrix.dtype, device=matrix.device).unsqueeze(1)
                masks = leak + (1.0 - leak) * masks
        return (masks * matrix).sum(dim=0)
