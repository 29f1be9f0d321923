"""Type names for the matrices that the aggregators and weightings take."""

from torch import Tensor


class Matrix(Tensor):
    """
    A tensor with two dimensions ``[m, n]``, e.g. a Jacobian matrix with one row per objective.

    Used in type hints only: any 2-dimensional :class:`torch.Tensor` is accepted where a
    ``Matrix`` is expected, and no tensor needs to be converted to this class.

    >>> import torch
    >>> from torchjd.linalg import Matrix
    >>> def number_of_objectives(jacobian: Matrix) -> int:
    ...     return jacobian.shape[0]
    >>> number_of_objectives(torch.zeros(3, 5))
    3
    """


class PSDMatrix(Matrix):
    """
    A symmetric positive semi-definite matrix ``[m, m]``, e.g. the Gramian ``J @ J.T`` of a Jacobian.

    Used in type hints only, like :class:`Matrix`: the weightings that take a ``PSDMatrix`` accept
    any square :class:`torch.Tensor` and assume, without checking it, that it is PSD.

    >>> import torch
    >>> from torchjd.linalg import PSDMatrix, compute_gramian
    >>> def total_squared_norm(gramian: PSDMatrix) -> float:
    ...     return gramian.trace().item()
    >>> total_squared_norm(compute_gramian(torch.tensor([[1.0, 2.0], [0.0, 3.0]])))
    14.0
    """
