from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from torchjd.linalg import compute_gramian

from ._weighting_bases import Weighting


def _check_is_matrix(matrix: Tensor, name: str = "matrix") -> None:
    if not isinstance(matrix, Tensor):
        raise TypeError(f"Parameter `{name}` should be a Tensor. Found `{type(matrix).__name__}`.")
    if matrix.dim() != 2:
        raise ValueError(
            f"Parameter `{name}` should be a matrix (2 dimensions). Found shape {tuple(matrix.shape)}."
        )


class Aggregator(nn.Module, ABC):
    """
    Reduces a Jacobian matrix ``[m, n]`` (one row per objective) to one update vector ``[n]``.

    Subclasses implement :meth:`aggregate`; calling the aggregator validates the input first and
    returns zeros when the matrix has no rows.
    """

    def forward(self, matrix: Tensor) -> Tensor:
        _check_is_matrix(matrix)
        if matrix.shape[0] == 0:
            return torch.zeros(matrix.shape[1], dtype=matrix.dtype, device=matrix.device)
        return self.aggregate(matrix)

    @abstractmethod
    def aggregate(self, matrix: Tensor) -> Tensor:
        """Returns the aggregation ``[n]`` of a validated, non-empty matrix ``[m, n]``."""

    def __str__(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class WeightedAggregator(Aggregator):
    """
    Aggregator of the form ``A(J) = weighting(J) @ J``: a linear combination of the rows of ``J``.

    :param weighting: The weighting that maps the matrix ``[m, n]`` to weights ``[m]``.
    """

    def __init__(self, weighting: Weighting):
        super().__init__()
        self.weighting = weighting

    def weights(self, matrix: Tensor) -> Tensor:
        """Returns the weights ``[m]`` that this aggregator gives to the rows of ``matrix``."""
        return self.weighting(matrix)

    def aggregate(self, matrix: Tensor) -> Tensor:
        return self.weights(matrix) @ matrix


class GramianWeightedAggregator(WeightedAggregator):
    """
    Weighted aggregator whose weights depend only on the Gramian ``J @ J.T`` of the matrix.

    Because the matrix only enters through its Gramian, :func:`torchjd.autojac.jac_to_grad` and
    :mod:`torchjd.autogram` can compute the weights without ever forming ``J``.

    :param weighting: The weighting that maps the Gramian ``[m, m]`` to weights ``[m]``.
    """

    def weights(self, matrix: Tensor) -> Tensor:
        return self.weighting(compute_gramian(matrix))
