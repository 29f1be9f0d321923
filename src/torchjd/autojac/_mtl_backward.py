from collections.abc import Iterable, Sequence

from torch import Tensor

from torchjd.distributed import _fsdp

from ._graph import get_leaves
from ._transform import AccumulateGrad, AccumulateJac, Grad, Init, Jac, Select, Stack, Transform
from ._validation import (
    as_input_list,
    as_tensor_list,
    check_chunk_size,
    check_existing_jacs,
    as_list_of_tensors,
)


def mtl_backward(
    tensors: Sequence[Tensor],
    features: Sequence[Tensor] | Tensor,
    grad_tensors: Sequence[Tensor] | None = None,
    tasks_params: Sequence[Iterable[Tensor]] | None = None,
    shared_params: Iterable[Tensor] | None = None,
    retain_graph: bool = False,
    parallel_chunk_size: int | None = None,
) -> None:
    """
    Backward pass of multi-task learning with a shared trunk: accumulates the gradient of each task
    tensor with respect to its task-specific parameters into their ``.grad`` fields, and the
    Jacobian of all task tensors with respect to the shared parameters (one row per task) into
    their ``.jac`` fields.

    The task tensors are first differentiated with respect to the ``features`` (the output of the
    shared trunk), one row per task, and that Jacobian is then backpropagated through the trunk in
    one batched pass. Aggregate the shared parameters' ``.jac`` fields with
    :func:`torchjd.autojac.jac_to_grad`.

    :param tensors: One tensor per task, usually its loss. Should be non-empty.
    :param features: The tensor or tensors output by the shared trunk, from which every task tensor
        is computed.
    :param grad_tensors: One gradient per task tensor (same shape), used to contract non-scalar
        task tensors into one row each. Required when a task tensor is not a scalar. Defaults to
        ones for scalar task tensors.
    :param tasks_params: One iterable of parameters per task. Defaults, for each task, to the leaf
        tensors of its graph that are not reached through the ``features``. A parameter shared by
        several tasks gets the sum of their gradients.
    :param shared_params: The parameters of the trunk. Defaults to the leaf tensors used to compute
        the ``features``. Must not overlap with the task parameters.
    :param retain_graph: If ``False``, the graph of the trunk will be freed. The (small) graphs of
        the task heads are always kept, since heads may share parts of their graphs.
    :param parallel_chunk_size: The number of tasks to backpropagate through the trunk
        simultaneously (see :func:`torchjd.autojac.jac`). Defaults to ``None``: all at once.

    >>> import torch
    >>> from torch.nn import Linear
    >>> from torchjd.autojac import mtl_backward
    >>>
    >>> _ = torch.manual_seed(0)
    >>> trunk, head1, head2 = Linear(3, 2), Linear(2, 1), Linear(2, 1)
    >>> features = trunk(torch.randn(8, 3))
    >>> loss1 = head1(features).square().mean()
    >>> loss2 = head2(features).abs().mean()
    >>> mtl_backward([loss1, loss2], features)
    >>> trunk.weight.jac.shape  # One row per task
    torch.Size([2, 2, 3])
    >>> head1.weight.grad.shape
    torch.Size([1, 2])
    """

    tensor_list = as_tensor_list(tensors, "tensors")
    feature_list = as_tensor_list(features, "features")
    check_chunk_size(parallel_chunk_size)
    grads = _as_grad_tensors(grad_tensors, tensor_list)

    if tasks_params is None:
        task_param_lists = [get_leaves([t], excluded=feature_list) for t in tensor_list]
    else:
        task_param_lists = _as_tasks_params(tasks_params, len(tensor_list))
    shared = (
        get_leaves(feature_list)
        if shared_params is None
        else as_input_list(shared_params, "shared_params", True)
    )
    # FSDP2: the graph reaches the unsharded copies of sharded parameters.
    shared = _fsdp.to_unsharded(shared, len(tensor_list), "shared_params")
    task_param_lists = [_fsdp.to_unsharded(ps, None, "tasks_params") for ps in task_param_lists]
    _check_no_overlap(shared, task_param_lists, feature_list)
    check_existing_jacs(shared, len(tensor_list), "shared_params")

    task_transforms: list[Transform] = []
    for tensor, grad, params in zip(tensor_list, grads, task_param_lists):
        unique_params = list(dict.fromkeys(params))
        init = Init([tensor], values=None if grad is None else {tensor: grad})
        # The heads' graphs are retained because heads may share nodes (e.g. a shared parameter).
        differentiate = Grad([tensor], unique_params + feature_list, retain_graph=True)
        task_transforms.append(
            (Select(feature_list) | AccumulateGrad() << Select(unique_params)) << differentiate << init
        )
    unique_shared = list(dict.fromkeys(shared))
    trunk = Jac(feature_list, unique_shared, parallel_chunk_size, retain_graph)
    transform = AccumulateJac() << trunk << Stack(task_transforms)
    transform.check_keys(set())
    with _fsdp.backward_pass(unique_shared + [p for ps in task_param_lists for p in ps]):
        transform({})


def _as_grad_tensors(
    grad_tensors: Sequence[Tensor] | None, tensors: list[Tensor]
) -> list[Tensor | None]:
    if grad_tensors is None:
        for index, tensor in enumerate(tensors):
            if tensor.numel() != 1:
                raise ValueError(
                    f"Parameter `grad_tensors` is required when a task tensor is not a scalar. "
                    f"Element {index} of `tensors` has shape {list(tensor.shape)}."
                )
        return [None] * len(tensors)
    grads = [grad_tensors] if isinstance(grad_tensors, Tensor) else as_list_of_tensors(
        grad_tensors, "grad_tensors"
    )
    if len(grads) != len(tensors):
        raise ValueError(
            f"Parameter `grad_tensors` should have one tensor per task tensor ({len(tensors)}). "
            f"Found {len(grads)}."
        )
    for index, (grad, tensor) in enumerate(zip(grads, tensors)):
        if grad.shape != tensor.shape:
            raise ValueError(
                f"Parameter `grad_tensors` should match the shapes of `tensors`. Element {index} "
                f"has shape {list(grad.shape)} instead of {list(tensor.shape)}."
            )
    return list(grads)


def _as_tasks_params(tasks_params: Sequence[Iterable[Tensor]], n_tasks: int) -> list[list[Tensor]]:
    if isinstance(tasks_params, Tensor) or not isinstance(tasks_params, Sequence):
        raise TypeError(
            "Parameter `tasks_params` should be a sequence with one iterable of tensors per task. "
            f"Found `{type(tasks_params).__name__}`."
        )
    if len(tasks_params) != n_tasks:
        raise ValueError(
            f"Parameter `tasks_params` should have one entry per task tensor ({n_tasks}). Found "
            f"{len(tasks_params)}."
        )
    return [as_input_list(params, "tasks_params", True) for params in tasks_params]


def _check_no_overlap(
    shared: list[Tensor], task_param_lists: list[list[Tensor]], features: list[Tensor]
) -> None:
    shared_set = set(shared)
    feature_set = set(features)
    for index, params in enumerate(task_param_lists):
        if shared_set & set(params):
            raise ValueError(
                f"The parameters of task {index} overlap with `shared_params`. A parameter must be "
                f"either shared or task-specific; pass `tasks_params` and `shared_params` "
                f"explicitly to decide."
            )
        if feature_set & set(params):
            raise ValueError(f"The parameters of task {index} (`tasks_params`) contain a feature.")
