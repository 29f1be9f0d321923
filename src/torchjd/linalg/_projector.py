"""The interface of the dual-cone projectors that UPGrad and DualProj call."""

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from ._matrix import PSDMatrix


class DualConeProjector(ABC):
    """
    Solves ``v = argmin_{v >= u} v^T G v`` for a PSD Gramian ``G = J J^T`` ``[m, m]`` and a batch of
    vectors ``u``: ``J^T v`` is then the projection of ``J^T u`` onto the dual cone
    ``{x : J x >= 0}`` of the rows of ``J``. This is the inner problem of
    :class:`~torchjd.aggregation.UPGrad` and :class:`~torchjd.aggregation.DualProj`, which take a
    projector as their ``projector`` parameter.

    A projector is called as ``projector(U, G)`` with ``U`` ``[..., m]`` (the comparison
    ``v >= u`` is elementwise, one problem per vector of ``U``) and returns the solutions
    ``[..., m]``. Subclasses implement :meth:`__call__`, which is all that the aggregators need; a
    projector written for torchjd 0.18 works unchanged.

    >>> import torch
    >>> from torchjd.aggregation import UPGrad
    >>> from torchjd.linalg import DualConeProjector
    >>> class PositivePart(DualConeProjector):
    ...     '''Exact when no two rows conflict (G >= 0 elementwise), e.g. for orthogonal rows.'''
    ...     def __call__(self, U, G):
    ...         return U.clamp(min=0.0)
    >>> UPGrad(projector=PositivePart())(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    tensor([0.5000, 1.0000])
    """

    @abstractmethod
    def __call__(self, U: Tensor, G: PSDMatrix) -> Tensor:
        """
        Returns ``argmin_{v >= u} v^T G v`` ``[..., m]`` for each vector ``u`` of ``U``.

        :param U: The vectors ``u``, ``[..., m]``.
        :param G: The PSD Gramian ``[m, m]``.
        """

    def sum_of_basis_projections(self, weights: Tensor, G: PSDMatrix) -> Tensor:
        """
        Returns ``Σ_i self(weights_i e_i, G)`` ``[m]``, the weights of UPGrad with preferences
        ``weights`` ``[m]``. This calls the projector once on ``diag(weights)``; subclasses may
        override it with a faster equivalent.

        :param weights: The preferences ``p`` ``[m]``.
        :param G: The PSD Gramian ``[m, m]``.
        """

        return self(torch.diag(weights), G).sum(dim=0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def check_projection_inputs(U: object, G: object, name_of_u: str = "U") -> None:
    """Checks the published call convention ``projector(U, G)``: ``[..., m]`` and ``[m, m]``."""

    for value, name in ((U, name_of_u), (G, "G")):
        if not isinstance(value, Tensor):
            found = type(value).__name__
            raise TypeError(f"Parameter `{name}` should be a Tensor. Found `{found}`.")
        if not value.is_floating_point():
            raise TypeError(
                f"Parameter `{name}` should have a floating-point dtype. Found {value.dtype}."
            )
    assert isinstance(U, Tensor) and isinstance(G, Tensor)
    if G.dim() != 2 or G.shape[0] != G.shape[1]:
        raise ValueError(
            f"Parameter `G` should be a square PSD matrix [m, m]. Found shape {tuple(G.shape)}."
        )
    if U.dim() < 1 or U.shape[-1] != G.shape[0]:
        raise ValueError(
            f"Parameter `{name_of_u}` should have shape [..., m] with m = {G.shape[0]} (the size "
            f"of `G`). "
            f"Found shape {tuple(U.shape)}."
        )


def check_basis_weights(weights: object, G: object) -> None:
    """Checks the arguments of :meth:`DualConeProjector.sum_of_basis_projections`."""

    check_projection_inputs(weights, G, "weights")
    assert isinstance(weights, Tensor)
    if weights.dim() != 1:
        raise ValueError(
            f"Parameter `weights` should be a vector [m]. Found shape {tuple(weights.shape)}."
        )
