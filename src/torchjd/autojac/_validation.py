"""Checks of the arguments of the public functions, run before any differentiation."""

from collections.abc import Iterable, Sequence

from torch import Tensor


def as_tensor_list(value: Sequence[Tensor] | Tensor, name: str) -> list[Tensor]:
    """Returns ``value`` as a non-empty list of distinct tensors that require grad."""

    tensors = [value] if isinstance(value, Tensor) else as_list_of_tensors(value, name)
    if len(tensors) == 0:
        raise ValueError(f"Parameter `{name}` should be non-empty. Found an empty sequence.")
    check_distinct(tensors, name)
    for index, tensor in enumerate(tensors):
        if not tensor.requires_grad:
            raise ValueError(
                f"Parameter `{name}` should only contain tensors that require grad. Element "
                f"{index} (shape {tuple(tensor.shape)}) does not."
            )
    return tensors


def as_input_list(value: Iterable[Tensor] | Tensor, name: str, must_be_accumulable: bool) -> list[Tensor]:
    """
    Returns ``value`` as a list of tensors that require grad (repetitions kept). With
    ``must_be_accumulable``, each must also be a leaf or retain grad, so that a ``.jac`` or
    ``.grad`` field can be written to it.
    """

    tensors = [value] if isinstance(value, Tensor) else as_list_of_tensors(value, name)
    for index, tensor in enumerate(tensors):
        if not tensor.requires_grad:
            raise ValueError(
                f"Parameter `{name}` should only contain tensors that require grad. Element "
                f"{index} (shape {tuple(tensor.shape)}) does not."
            )
        if must_be_accumulable and not (tensor.is_leaf or tensor.retains_grad):
            raise ValueError(
                f"Parameter `{name}` should only contain leaf tensors or tensors that retain grad "
                f"(call `.retain_grad()` on them). Element {index} (shape "
                f"{tuple(tensor.shape)}) is neither."
            )
    return tensors


def check_distinct(tensors: Sequence[Tensor], name: str) -> None:
    if len({id(t) for t in tensors}) != len(tensors):
        raise ValueError(f"Parameter `{name}` should not contain the same tensor twice.")


def check_chunk_size(parallel_chunk_size: int | None) -> None:
    if parallel_chunk_size is None:
        return
    if isinstance(parallel_chunk_size, bool) or not isinstance(parallel_chunk_size, int):
        raise TypeError(
            "Parameter `parallel_chunk_size` should be an int or None. Found "
            f"`{type(parallel_chunk_size).__name__}`."
        )
    if parallel_chunk_size <= 0:
        raise ValueError(
            f"Parameter `parallel_chunk_size` should be a positive int or None. Found "
            f"{parallel_chunk_size}."
        )


def as_jac_outputs(
    jac_outputs: Sequence[Tensor] | Tensor,
    outputs_argument: Sequence[Tensor] | Tensor,
    outputs: list[Tensor],
    name: str,
) -> list[Tensor]:
    """
    Returns the Jacobians given for ``outputs`` as a list, after checking that they have the same
    structure as the outputs argument and the shapes ``[m] + output.shape`` with one common ``m``.
    """

    if isinstance(outputs_argument, Tensor):
        if not isinstance(jac_outputs, Tensor):
            raise TypeError(
                f"Parameter `{name}` should be a Tensor, like the tensor it gives the Jacobian "
                f"of. Found `{type(jac_outputs).__name__}`."
            )
        jacobians = [jac_outputs]
    else:
        if isinstance(jac_outputs, Tensor):
            raise TypeError(
                f"Parameter `{name}` should be a sequence of tensors, like the sequence it gives "
                f"the Jacobians of. Found a Tensor."
            )
        jacobians = as_list_of_tensors(jac_outputs, name)
        if len(jacobians) != len(outputs):
            raise ValueError(
                f"Parameter `{name}` should have one Jacobian per tensor ({len(outputs)}). Found "
                f"{len(jacobians)}."
            )
    for index, (jacobian, output) in enumerate(zip(jacobians, outputs)):
        if jacobian.dim() != output.dim() + 1 or jacobian.shape[1:] != output.shape:
            raise ValueError(
                f"Parameter `{name}` should have shape [m] + {list(output.shape)} at index "
                f"{index}, matching its tensor with a leading dimension. Found "
                f"{list(jacobian.shape)}."
            )
        if jacobian.device != output.device:
            raise ValueError(
                f"Parameter `{name}` should be on the device of its tensor. Element {index} is on "
                f"{jacobian.device}, its tensor on {output.device}."
            )
    leading_dims = {jacobian.shape[0] for jacobian in jacobians}
    if len(leading_dims) > 1:
        raise ValueError(
            f"Parameter `{name}` should have the same leading dimension (number of rows) for "
            f"every tensor. Found {[j.shape[0] for j in jacobians]}."
        )
    return jacobians


def check_existing_jacs(inputs: Iterable[Tensor], m: int, name: str) -> None:
    """Checks that the ``.jac`` fields already present can accumulate a Jacobian with m rows."""

    for index, tensor in enumerate(inputs):
        existing = getattr(tensor, "jac", None)
        if existing is not None and existing.shape != (m,) + tuple(tensor.shape):
            raise ValueError(
                f"Element {index} of `{name}` has a `.jac` field of shape {list(existing.shape)}, "
                f"which cannot accumulate a Jacobian of shape {[m] + list(tensor.shape)}."
            )


def as_list_of_tensors(value: Iterable[Tensor], name: str) -> list[Tensor]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(
            f"Parameter `{name}` should be a Tensor or a sequence of tensors. Found "
            f"`{type(value).__name__}`."
        )
    tensors = list(value)
    for index, tensor in enumerate(tensors):
        if not isinstance(tensor, Tensor):
            raise TypeError(
                f"Parameter `{name}` should only contain tensors. Element {index} is a "
                f"`{type(tensor).__name__}`."
            )
    return tensors
