from collections.abc import Sequence, Set

import torch
from torch import Tensor

from ._base import Transform, TensorDict


class Stack(Transform):
    """
    Applies several gradient-producing transforms to the same input and stacks their results into
    Jacobians: row ``i`` of the output for a key is the gradient that transform ``i`` produced for
    it, or zeros where transform ``i`` did not produce that key.

    :param transforms: The transforms, one per row of the resulting Jacobians.
    """

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, input: TensorDict) -> TensorDict:
        results = [transform(input) for transform in self.transforms]
        keys = list(dict.fromkeys(key for result in results for key in result))
        output = {}
        for key in keys:
            template = next(result[key] for result in results if key in result)
            rows = [result[key] if key in result else torch.zeros_like(template) for result in results]
            output[key] = torch.stack(rows)
        return output

    def check_keys(self, input_keys: Set[Tensor]) -> set[Tensor]:
        output_keys: set[Tensor] = set()
        for transform in self.transforms:
            output_keys |= transform.check_keys(input_keys)
        return output_keys

    def __str__(self) -> str:
        return f"Stack([{', '.join(str(t) for t in self.transforms)}])"
