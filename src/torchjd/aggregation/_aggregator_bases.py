from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from torchjd.linalg import compute_gramian

from ._input_policy import apply_in_working_precision, check_matrix, is_finite
from ._weighting_bases import Weighting


class Aggregator(nn.Module, ABC):
    """
    Reduces a Jacobian matrix ``[m, n]`` (one row per objective) to one update vector ``[n]``.

    Subclasses implement :meth:`forward`. Calling an aggregator first checks the matrix (a
    floating-point tensor with 2 dimensions), returns zeros when it has no rows, returns NaNs when
    it holds a NaN or an infinite value (so that e.g. ``torch.amp.GradScaler`` sees it and skips the
    step), and computes float16 and bfloat16 matrices in float32 (the result comes back in the
    matrix's dtype).

    >>> import torch
    >>> from torchjd.aggregation import Aggregator
    >>> class FirstRow(Aggregator):
    ...     def forward(self, matrix, /):
    ...         return matrix[0]
    >>> FirstRow()(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    tensor([1., 2.])
    """

    # Whether ``forward`` turns a non-finite matrix into a non-finite result by itself (then the
    # check, a pass over the whole matrix, is skipped).
    _propagates_non_finite: bool = False

    def __call__(self, matrix: Tensor, /) -> Tensor:
        check_matrix(matrix, "matrix")
        m, n = matrix.shape
        if m == 0:
            return torch.zeros(n, dtype=matrix.dtype, device=matrix.device)
        if not self._propagates_non_finite and not is_finite(matrix):
            return torch.full((n,), float("nan"), dtype=matrix.dtype, device=matrix.device)
        return apply_in_working_precision(super().__call__, matrix)

    @abstractmethod
    def forward(self, matrix: Tensor, /) -> Tensor:
        """Returns the aggregation ``[n]`` of a checked, finite, non-empty matrix ``[m, n]``."""

    def __str__(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


def _check_weighting(weighting: object, name: str) -> None:
    if not isinstance(weighting, Weighting):
        raise TypeError(
            f"Parameter `{name}` should be a `torchjd.aggregation.Weighting`. Found "
            f"`{type(weighting).__name__}`."
        )


class WeightedAggregator(Aggregator):
    """
    Aggregator of the form ``A(J) = weighting(J) @ J``: a linear combination of the rows of ``J``.

    :param weighting: The weighting that maps the matrix ``[m, n]`` to weights ``[m]``.

    >>> import torch
    >>> from torchjd.aggregation import MeanWeighting, WeightedAggregator
    >>> WeightedAggregator(MeanWeighting())(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    tensor([2., 3.])
    """

    # A non-finite matrix gives non-finite weights or a non-finite product with the weights.
    _propagates_non_finite = True

    def __init__(self, weighting: Weighting):
        super().__init__()
        _check_weighting(weighting, "weighting")
        self.weighting = weighting

    def weights(self, matrix: Tensor) -> Tensor:
        """Returns the weights ``[m]`` that this aggregator gives to the rows of ``matrix``."""
        return self.weighting(matrix)

    def forward(self, matrix: Tensor, /) -> Tensor:
        return self.weighting(matrix) @ matrix


class _WeightingOfGramian(Weighting):
    """The matrix weighting ``J -> gramian_weighting(J @ J.T)``."""

    _statistic_name = "matrix"
    # The Gramian weighting checks the Gramian, which is non-finite when the matrix is.
    _checks_finiteness = False

    def __init__(self, gramian_weighting: Weighting):
        super().__init__()
        self.gramian_weighting = gramian_weighting

    def forward(self, matrix: Tensor, /) -> Tensor:
        return self.gramian_weighting(compute_gramian(matrix))

    def __repr__(self) -> str:
        return f"{self.gramian_weighting!r} of the Gramian"


class GramianWeightedAggregator(WeightedAggregator):
    """
    Weighted aggregator whose weights depend only on the Gramian ``J @ J.T`` of the matrix.

    Because the matrix only enters through its Gramian, :func:`torchjd.autojac.jac_to_grad` and
    :mod:`torchjd.autogram` can compute the weights without ever forming ``J``: they call
    :attr:`gramian_weighting` on the Gramian. :attr:`weighting` takes the matrix, as for any
    :class:`WeightedAggregator`.

    :param gramian_weighting: The weighting that maps the Gramian ``[m, m]`` to weights ``[m]``.

    >>> import torch
    >>> from torchjd.aggregation import GramianWeightedAggregator, UPGradWeighting
    >>> A = GramianWeightedAggregator(UPGradWeighting())
    >>> A(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    tensor([0.5000, 0.5000])
    """

    def __init__(self, gramian_weighting: Weighting):
        _check_weighting(gramian_weighting, "gramian_weighting")
        super().__init__(_WeightingOfGramian(gramian_weighting))

    @property
    def gramian_weighting(self) -> Weighting:
        """The weighting that maps the Gramian ``[m, m]`` to the weights ``[m]``."""
        return self.weighting.gramian_weighting
