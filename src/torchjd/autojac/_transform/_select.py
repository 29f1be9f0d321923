from collections.abc import Iterable, Set

from torch import Tensor

from ._base import RequirementError, Transform, TensorDict, _names


class Select(Transform):
    """
    Keeps only the given keys of its input.

    :param keys: The keys to keep. They must all be present in the input.
    """

    def __init__(self, keys: Iterable[Tensor]):
        self.keys = set(keys)

    def __call__(self, input: TensorDict) -> TensorDict:
        return {key: value for key, value in input.items() if key in self.keys}

    def check_keys(self, input_keys: Set[Tensor]) -> set[Tensor]:
        missing = self.keys - set(input_keys)
        if missing:
            raise RequirementError(f"{self} selects keys {_names(missing)} absent from its input.")
        return set(self.keys)
