from torch import Tensor


def compute_gramian(matrix: Tensor) -> Tensor:
    """
    Returns the Gramian ``matrix @ matrix.T`` of a matrix ``[m, n]``, as a ``[m, m]`` tensor.

    :param matrix: The matrix whose rows are the vectors to compare.

    >>> import torch
    >>> from torchjd.linalg import compute_gramian
    >>> compute_gramian(torch.tensor([[1., 0.], [1., 1.]]))
    tensor([[1., 1.],
            [1., 2.]])
    """

    return matrix @ matrix.T
