from collections.abc import Sequence, Set

import torch
from torch import Tensor

from ._base import RequirementError, Transform, TensorDict


class Diagonalize(Transform):
    """
    Turns gradients into Jacobians with one row per scalar of the keys.

    The keys are laid out one after the other in the given order: if ``g`` is the concatenation of
    the flattened gradients, the output is the Jacobian of ``diag(g)``, i.e. row ``i`` is zero
    everywhere except at scalar ``i``, where it holds ``g[i]``. With gradients of ones, this is the
    identity, so that a following :class:`Jac` computes the ordinary Jacobian.

    :param keys: The tensors to diagonalize, in the order that defines the rows.
    """

    def __init__(self, keys: Sequence[Tensor]):
        self.keys = list(keys)

    def __call__(self, input: TensorDict) -> TensorDict:
        if len(self.keys) == 1:  # The common case, in fewer operations.
            key = self.keys[0]
            return {key: torch.diag(input[key].reshape(-1)).view((key.numel(),) + key.shape)}
        gradients = [input[key].reshape(-1) for key in self.keys]
        diagonal = torch.diag(torch.cat(gradients))  # [m, m]
        columns = diagonal.split([key.numel() for key in self.keys], dim=1)
        m = diagonal.shape[0]
        return {key: column.reshape((m,) + key.shape) for key, column in zip(self.keys, columns)}

    def check_keys(self, input_keys: Set[Tensor]) -> set[Tensor]:
        return _check_exactly_its_keys(self, self.keys, input_keys)


class DiagonalizeByKey(Transform):
    """
    Turns gradients into Jacobians with one row per key: row ``i`` holds the gradient of key ``i``
    for that key and zeros for every other key. With one scalar key per task, this is the identity
    that makes a following :class:`Jac` compute the Jacobian of the tasks, one row each.

    :param keys: The tensors, in the order that defines the rows.
    """

    def __init__(self, keys: Sequence[Tensor]):
        self.keys = list(keys)

    def __call__(self, input: TensorDict) -> TensorDict:
        m = len(self.keys)
        output = {}
        for row, key in enumerate(self.keys):
            jacobian = input[key].new_zeros((m,) + key.shape)
            jacobian[row] = input[key]
            output[key] = jacobian
        return output

    def check_keys(self, input_keys: Set[Tensor]) -> set[Tensor]:
        return _check_exactly_its_keys(self, self.keys, input_keys)


def _check_exactly_its_keys(
    transform: Transform, keys: Sequence[Tensor], input_keys: Set[Tensor]
) -> set[Tensor]:
    """The output keys of a diagonalizing ``transform``: exactly its ``keys``, which it requires."""

    key_set = set(keys)
    if key_set != set(input_keys):
        raise RequirementError(
            f"{transform} expects exactly the keys it diagonalizes: {len(key_set)} keys, found "
            f"{len(input_keys)} keys of which {len(key_set & set(input_keys))} match."
        )
    return key_set
