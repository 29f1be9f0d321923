from collections.abc import Sequence, Set

from torch import Tensor

from ._base import RequirementError, Transform, TensorDict, _names
from ._differentiate import batched_vjp


class Jac(Transform):
    """
    Backpropagates Jacobians with respect to ``outputs`` (value shape ``[m] + output.shape``) into
    Jacobians with respect to ``inputs`` (value shape ``[m] + input.shape``), by batched
    vector-Jacobian products.

    :param outputs: The tensors whose Jacobians are the input of this transform.
    :param inputs: The tensors whose Jacobians are produced. An input that the outputs do not
        depend on gets zeros.
    :param chunk_size: The number of rows backpropagated in one vectorized pass: all at once if
        ``None``, one at a time without ``torch.vmap`` if 1.
    :param retain_graph: Whether to keep the graph after the last pass.
    :param create_graph: Whether to make the resulting Jacobians differentiable.
    """

    def __init__(
        self,
        outputs: Sequence[Tensor],
        inputs: Sequence[Tensor],
        chunk_size: int | None = None,
        retain_graph: bool = False,
        create_graph: bool = False,
    ):
        self.outputs = list(outputs)
        self.inputs = list(inputs)
        self.chunk_size = chunk_size
        self.retain_graph = retain_graph
        self.create_graph = create_graph

    def __call__(self, input: TensorDict) -> TensorDict:
        jac_outputs = [input[output] for output in self.outputs]
        jacobians = batched_vjp(
            self.outputs,
            self.inputs,
            jac_outputs,
            self.chunk_size,
            self.retain_graph,
            self.create_graph,
        )
        return dict(zip(self.inputs, jacobians))

    def check_keys(self, input_keys: Set[Tensor]) -> set[Tensor]:
        _check_outputs_are_input_keys(self, self.outputs, input_keys)
        return set(self.inputs)


class Grad(Transform):
    """
    Backpropagates gradients with respect to ``outputs`` (value shape = output shape) into
    gradients with respect to ``inputs``, by one vector-Jacobian product.

    :param outputs: The tensors whose gradients are the input of this transform.
    :param inputs: The tensors whose gradients are produced (zeros where not reached).
    :param retain_graph: Whether to keep the graph after the pass.
    :param create_graph: Whether to make the resulting gradients differentiable.
    """

    def __init__(
        self,
        outputs: Sequence[Tensor],
        inputs: Sequence[Tensor],
        retain_graph: bool = False,
        create_graph: bool = False,
    ):
        self.outputs = list(outputs)
        self.inputs = list(inputs)
        self.retain_graph = retain_graph
        self.create_graph = create_graph

    def __call__(self, input: TensorDict) -> TensorDict:
        grad_outputs = [input[output].unsqueeze(0) for output in self.outputs]
        jacobians = batched_vjp(
            self.outputs, self.inputs, grad_outputs, 1, self.retain_graph, self.create_graph
        )
        return {key: jacobian[0] for key, jacobian in zip(self.inputs, jacobians)}

    def check_keys(self, input_keys: Set[Tensor]) -> set[Tensor]:
        _check_outputs_are_input_keys(self, self.outputs, input_keys)
        return set(self.inputs)


def _check_outputs_are_input_keys(
    transform: Transform, outputs: Sequence[Tensor], input_keys: Set[Tensor]
) -> None:
    if set(outputs) != set(input_keys):
        missing = set(outputs) - set(input_keys)
        extra = set(input_keys) - set(outputs)
        raise RequirementError(
            f"{transform} expects its input keys to be its outputs. Missing: {_names(missing)}, "
            f"unexpected: {_names(extra)}."
        )
