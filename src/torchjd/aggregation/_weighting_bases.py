from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn


class Weighting(nn.Module, ABC):
    """
    Maps a statistic of a Jacobian matrix to one weight per row, ``[m]``.

    Matrix-based weightings take the matrix ``[m, n]`` itself; Gramian-based weightings take its
    positive semi-definite Gramian ``[m, m]`` (``J @ J.T``), which is what
    :class:`~torchjd.aggregation.GramianWeightedAggregator` and :mod:`torchjd.autogram` feed them.
    Subclasses implement :meth:`compute_weights`; calling the weighting validates the input first
    and returns an empty tensor when there are no rows.
    """

    def forward(self, stat: Tensor) -> Tensor:
        if not isinstance(stat, Tensor):
            raise TypeError(f"Parameter `stat` should be a Tensor. Found `{type(stat).__name__}`.")
        if stat.dim() != 2:
            raise ValueError(
                f"Parameter `stat` should be a matrix (2 dimensions). Found shape {tuple(stat.shape)}."
            )
        if stat.shape[0] == 0:
            return torch.zeros(0, dtype=stat.dtype, device=stat.device)
        return self.compute_weights(stat)

    @abstractmethod
    def compute_weights(self, stat: Tensor) -> Tensor:
        """Returns the weights ``[m]`` for a validated, non-empty statistic."""

    def __str__(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"
