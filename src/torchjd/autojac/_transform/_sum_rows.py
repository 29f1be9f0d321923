from collections.abc import Mapping, Sequence, Set

from torch import Tensor

from ._base import RequirementError, Transform, TensorDict, _names


class SumRows(Transform):
    """
    Turns Jacobians into gradients: for each key, the sum of the given rows of its Jacobian (e.g. a
    task parameter gets the gradients of the tasks it belongs to, and nothing from the others).

    :param rows: For each key, the indices of the rows to sum (at least one).
    """

    def __init__(self, rows: Mapping[Tensor, Sequence[int]]):
        self.rows = {key: list(indices) for key, indices in rows.items()}

    def __call__(self, input: TensorDict) -> TensorDict:
        output = {}
        for key, jacobian in input.items():
            indices = self.rows[key]
            if len(indices) == 1:
                output[key] = jacobian[indices[0]]
            elif indices == list(range(jacobian.shape[0])):
                output[key] = jacobian.sum(dim=0)
            else:
                output[key] = jacobian[indices].sum(dim=0)
        return output

    def check_keys(self, input_keys: Set[Tensor]) -> set[Tensor]:
        keys = set(self.rows)
        if keys != set(input_keys):
            raise RequirementError(
                f"{self} expects exactly the keys it has rows for. Missing: "
                f"{_names(keys - set(input_keys))}, unexpected: {_names(set(input_keys) - keys)}."
            )
        return keys
