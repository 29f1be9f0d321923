from collections.abc import Iterable, Mapping, Set

import torch
from torch import Tensor

from ._base import RequirementError, Transform, TensorDict


class Init(Transform):
    """
    Starts a pipeline: from the empty dict, produces a gradient for each key.

    :param keys: The tensors to produce gradients for.
    :param values: Optional gradients ``{key: value}`` (value shape = key shape). Keys without a
        value get a gradient of ones, as ``torch.autograd.backward`` does for a scalar.
    """

    def __init__(self, keys: Iterable[Tensor], values: Mapping[Tensor, Tensor] | None = None):
        self.keys = list(keys)
        self.values = {} if values is None else dict(values)

    def __call__(self, input: TensorDict) -> TensorDict:
        return {
            key: self.values[key] if key in self.values else torch.ones_like(key)
            for key in self.keys
        }

    def check_keys(self, input_keys: Set[Tensor]) -> set[Tensor]:
        if input_keys:
            raise RequirementError(f"{self} expects an empty input. Found {len(input_keys)} keys.")
        return set(self.keys)
