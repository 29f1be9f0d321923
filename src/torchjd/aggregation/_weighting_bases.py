from abc import ABC, abstractmethod
from typing import Generic, TypeVar

import torch
from torch import Tensor, nn

from ._input_policy import apply_in_working_precision, check_matrix, is_finite

_T = TypeVar("_T", bound=Tensor)


class Weighting(nn.Module, ABC, Generic[_T]):
    """
    Maps a statistic of a Jacobian matrix to one weight per row, ``[m]``.

    Matrix-based weightings take the matrix ``[m, n]`` itself; Gramian-based weightings take its
    positive semi-definite Gramian ``[m, m]`` (``J @ J.T``), which is what
    :class:`~torchjd.aggregation.GramianWeightedAggregator` and :mod:`torchjd.autogram` feed them.

    Subclasses implement :meth:`forward`. Calling a weighting first checks the statistic (a
    floating-point matrix), returns an empty tensor when it has no rows, returns NaN weights when
    it holds a NaN or an infinite value (so that the non-finite value reaches the update instead of
    being hidden), and computes float16 and bfloat16 statistics in float32 (the weights come back in
    the statistic's dtype).

    >>> import torch
    >>> from torchjd.aggregation import Weighting
    >>> class InverseNormWeighting(Weighting):
    ...     def forward(self, matrix, /):
    ...         return 1.0 / matrix.norm(dim=1)
    >>> InverseNormWeighting()(torch.tensor([[3.0, 4.0], [0.0, 2.0]]))
    tensor([0.2000, 0.5000])
    """

    # Whether the weights depend on the values of the statistic (False: only on its number of rows,
    # dtype and device, so any ``[m, k]`` tensor, even ``[m, 0]``, gives the same weights).
    _needs_statistic: bool = True
    # Whether a non-finite statistic gets NaN weights before ``forward`` runs. Off for weightings
    # that hand the statistic to another weighting that checks it.
    _checks_finiteness: bool = True
    # The name of the statistic in error messages.
    _statistic_name: str = "stat"
    _statistic_is_square: bool = False

    def __call__(self, stat: Tensor, /) -> Tensor:
        check_matrix(stat, self._statistic_name, square=self._statistic_is_square)
        m = stat.shape[0]
        if m == 0:
            return torch.zeros(0, dtype=stat.dtype, device=stat.device)
        if self._needs_statistic and self._checks_finiteness and not is_finite(stat):
            return torch.full((m,), float("nan"), dtype=stat.dtype, device=stat.device)
        return apply_in_working_precision(super().__call__, stat)

    @abstractmethod
    def forward(self, stat: _T, /) -> Tensor:
        """Returns the weights ``[m]`` of a checked, finite, non-empty statistic."""

    def __str__(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class MatrixWeighting(Weighting[Tensor], ABC):
    """Base of the weightings that take the matrix ``[m, n]`` itself."""

    _statistic_name = "matrix"


class GramianWeighting(Weighting[Tensor], ABC):
    """Base of the weightings that take the Gramian ``J @ J.T`` ``[m, m]`` of the matrix."""

    _statistic_name = "gramian"
    _statistic_is_square = True


class ShapeOnlyWeighting(MatrixWeighting, ABC):
    """
    Base of the weightings whose weights depend only on the number of rows ``m`` (and the dtype and
    device) of their statistic: they take a matrix, a Gramian or even an ``[m, 0]`` tensor.
    """

    _needs_statistic = False
