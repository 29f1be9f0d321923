from collections.abc import Iterable, Sequence

from torch import Tensor

from torchjd.distributed import _fsdp

from ._graph import get_leaves
from ._jac import run
from ._transform import AccumulateJac, Jac
from ._validation import (
    as_input_list,
    as_jac_outputs,
    as_tensor_list,
    check_chunk_size,
    check_existing_jacs,
)


def backward(
    tensors: Sequence[Tensor] | Tensor,
    /,
    *,
    jac_tensors: Sequence[Tensor] | Tensor | None = None,
    inputs: Iterable[Tensor] | None = None,
    retain_graph: bool = False,
    parallel_chunk_size: int | None = None,
    create_graph: bool = False,
) -> None:
    """
    Computes the Jacobians of ``tensors`` with respect to ``inputs`` (left-multiplied by
    ``jac_tensors``, or identity) and accumulates them into the ``.jac`` field of each input: the
    vector-valued sibling of :func:`torch.autograd.backward`.

    Each Jacobian has shape ``[m] + input.shape``. It is added to an existing ``.jac`` field (whose
    shape must then match) or stored as a new one. Combine the ``.jac`` fields into ``.grad`` fields
    with :func:`torchjd.autojac.jac_to_grad`.

    :param tensors: The tensor or tensors to differentiate. Should be non-empty.
    :param jac_tensors: The initial Jacobians to backpropagate (see ``jac_outputs`` in
        :func:`torchjd.autojac.jac`). If ``None``, the identity: one row per value of ``tensors``.
    :param inputs: The tensors to accumulate Jacobians into. They must require grad and be leaves
        or retain grad. Defaults to the leaf tensors that were used to compute ``tensors``.
    :param retain_graph: If ``False``, the graph used to compute the Jacobians will be freed.
    :param parallel_chunk_size: The number of rows to differentiate simultaneously (see
        :func:`torchjd.autojac.jac`). Defaults to ``None``: all at once.
    :param create_graph: If ``True``, the accumulated Jacobians are differentiable.

    >>> import torch
    >>> from torchjd.autojac import backward
    >>>
    >>> param = torch.tensor([1., 2.], requires_grad=True)
    >>> y1 = torch.tensor([-1., 1.]) @ param
    >>> y2 = (param ** 2).sum()
    >>> backward([y1, y2])
    >>> param.jac
    tensor([[-1.,  1.],
            [ 2.,  4.]])
    """

    tensor_list = as_tensor_list(tensors, "tensors")
    input_list = (
        get_leaves(tensor_list) if inputs is None else as_input_list(inputs, "inputs", True)
    )
    check_chunk_size(parallel_chunk_size)
    jacobians = (
        None
        if jac_tensors is None
        else as_jac_outputs(jac_tensors, tensors, tensor_list, "jac_tensors")
    )
    m = sum(t.numel() for t in tensor_list) if jacobians is None else jacobians[0].shape[0]
    input_list = _fsdp.to_unsharded(input_list, m, "inputs")  # FSDP2: the graph's leaves.
    check_existing_jacs(input_list, m, "inputs")

    unique_inputs = list(dict.fromkeys(input_list))
    if not unique_inputs:
        return
    differentiate = Jac(tensor_list, unique_inputs, parallel_chunk_size, retain_graph, create_graph)
    with _fsdp.backward_pass(unique_inputs):  # FSDP2: .jac onto the shards, see _fsdp.
        run(AccumulateJac() << differentiate, tensor_list, jacobians)
