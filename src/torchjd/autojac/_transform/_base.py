from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Set

from torch import Tensor

# Maps tensors (keys, compared by identity) to tensors (values). Whether the values are gradients
# (value shape = key shape) or Jacobians (value shape = [m] + key shape) depends on the stage.
TensorDict = Mapping[Tensor, Tensor]


class RequirementError(ValueError):
    """Raised by :meth:`Transform.check_keys` when a pipeline's key flow does not fit together."""


def _names(keys: Iterable[Tensor]) -> str:
    return "[" + ", ".join(f"Tensor{tuple(k.shape)}" for k in keys) + "]"


class Transform(ABC):
    """
    Maps a :data:`TensorDict` to a :data:`TensorDict`.

    ``outer << inner`` composes two transforms (``inner`` first) and ``a | b`` applies both to the
    same input and unites their (disjoint) outputs. :meth:`check_keys` validates the key flow of a
    whole pipeline before any differentiation runs.
    """

    @abstractmethod
    def __call__(self, input: TensorDict) -> TensorDict:
        """Applies the transform."""

    @abstractmethod
    def check_keys(self, input_keys: Set[Tensor]) -> set[Tensor]:
        """
        Returns the keys of the output given those of the input, or raises a
        :class:`RequirementError` if the transform cannot be applied to such an input.
        """

    def __lshift__(self, inner: "Transform") -> "Transform":
        return Composition(self, inner)

    def __or__(self, other: "Transform") -> "Transform":
        return Conjunction([self, other])

    def __str__(self) -> str:
        return type(self).__name__


class Composition(Transform):
    """Applies ``inner``, then ``outer``."""

    def __init__(self, outer: Transform, inner: Transform):
        self.outer = outer
        self.inner = inner

    def __call__(self, input: TensorDict) -> TensorDict:
        return self.outer(self.inner(input))

    def check_keys(self, input_keys: Set[Tensor]) -> set[Tensor]:
        return self.outer.check_keys(self.inner.check_keys(input_keys))

    def __str__(self) -> str:
        return f"{_in_parentheses_if(self.outer, Conjunction)} ∘ {_in_parentheses_if(self.inner, Conjunction)}"


class Conjunction(Transform):
    """Applies each transform to the same input and unites their outputs, which must be disjoint."""

    def __init__(self, transforms: list[Transform]):
        self.transforms = []
        for transform in transforms:
            # Flattening keeps `a | b | c` one conjunction of three, which reads better when printed.
            if isinstance(transform, Conjunction):
                self.transforms.extend(transform.transforms)
            else:
                self.transforms.append(transform)

    def __call__(self, input: TensorDict) -> TensorDict:
        output: dict[Tensor, Tensor] = {}
        for transform in self.transforms:
            output.update(transform(input))
        return output

    def check_keys(self, input_keys: Set[Tensor]) -> set[Tensor]:
        output_keys: set[Tensor] = set()
        for transform in self.transforms:
            keys = transform.check_keys(input_keys)
            overlap = output_keys & keys
            if overlap:
                raise RequirementError(
                    f"The transforms of a conjunction must produce disjoint keys. Keys "
                    f"{_names(overlap)} are produced by more than one of {self}."
                )
            output_keys |= keys
        return output_keys

    def __str__(self) -> str:
        return " | ".join(_in_parentheses_if(t, Composition) for t in self.transforms)


def _in_parentheses_if(transform: Transform, kind: type) -> str:
    text = str(transform)
    return f"({text})" if isinstance(transform, kind) else text
