from collections.abc import Iterable, Sequence

from torch import Tensor

from torchjd.distributed import _fsdp

from ._graph import get_leaves, graphs_overlap
from ._transform import (
    AccumulateGrad,
    AccumulateJac,
    Conjunction,
    DiagonalizeByKey,
    Fastest,
    Grad,
    Init,
    Jac,
    Select,
    Stack,
    SumRows,
    Transform,
)
from ._validation import (
    as_input_list,
    as_tensor_list,
    check_chunk_size,
    check_existing_jacs,
    as_list_of_tensors,
)


def mtl_backward(
    tensors: Sequence[Tensor],
    /,
    features: Sequence[Tensor] | Tensor,
    *,
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
    shared trunk) and to the task parameters, one row per task, in one batched pass through the
    heads; the features' Jacobian is then backpropagated through the trunk in one batched pass.
    Nothing is written to any ``.grad`` or ``.jac`` unless both passes succeed. Aggregate the
    shared parameters' ``.jac`` fields with :func:`torchjd.autojac.jac_to_grad`.

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
        the ``features``. Must not overlap with the task parameters. If empty (e.g. a frozen
        trunk), only the task parameters' ``.grad`` fields are filled.
    :param retain_graph: If ``False``, the graph of the trunk will be freed. The (small) graphs of
        the task heads are always kept, since heads may share parts of their graphs.
    :param parallel_chunk_size: The number of tasks to backpropagate simultaneously, through the
        heads and through the trunk (see :func:`torchjd.autojac.jac`). Defaults to ``None``: all at
        once, or one task at a time where that was measured to be clearly faster for the same
        graph; the result is the same.

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

    # For each task parameter, the tasks (rows) whose gradients it receives.
    rows: dict[Tensor, list[int]] = {}
    for task, params in enumerate(task_param_lists):
        for param in dict.fromkeys(params):
            rows.setdefault(param, []).append(task)
    task_params = list(rows)
    unique_shared = list(dict.fromkeys(shared))
    if not task_params and not unique_shared:
        return

    heads = _heads_stage(
        tensor_list, grads, task_param_lists, feature_list, bool(unique_shared), parallel_chunk_size
    )
    branches: list[Transform] = []
    if unique_shared:
        trunk = _trunk_stage(
            feature_list, unique_shared, len(tensor_list), parallel_chunk_size, retain_graph
        )
        branches.append(AccumulateJac() << trunk << Select(feature_list))
    if task_params:
        branches.append(AccumulateGrad() << SumRows(rows) << Select(task_params))
    # The trunk's branch comes first: its differentiation can still fail (e.g. on a freed graph),
    # and nothing may be written before it succeeded.
    accumulate = branches[0] if len(branches) == 1 else Conjunction(branches)
    transform = accumulate << heads
    transform.check_keys(set())
    with _fsdp.backward_pass(unique_shared + [p for ps in task_param_lists for p in ps]):
        transform({})


def _heads_stage(
    tensors: list[Tensor],
    grads: list[Tensor | None],
    task_param_lists: list[list[Tensor]],
    features: list[Tensor],
    differentiate_features: bool,
    parallel_chunk_size: int | None,
) -> Transform:
    """
    The stage that differentiates the task tensors with respect to all the task parameters (and
    the ``features`` if ``differentiate_features``), one row per task: one vectorized pass through
    all the heads, or one pass per task through its own head only. The heads' graphs are retained,
    as in torchjd 0.18 (they are small, and users may differentiate them again).
    """

    task_params = list(dict.fromkeys(p for params in task_param_lists for p in params))
    differentiated_features = features if differentiate_features else []
    head_inputs = task_params + differentiated_features

    initial_grads = {t: g for t, g in zip(tensors, grads) if g is not None}
    chunk_size = parallel_chunk_size if parallel_chunk_size != 1 else None
    vectorized = (
        Jac(tensors, head_inputs, chunk_size, retain_graph=True)
        << DiagonalizeByKey(tensors)
        << Init(tensors, initial_grads)
    )
    per_task = []
    for tensor, params in zip(tensors, task_param_lists):
        inputs = list(dict.fromkeys(params)) + differentiated_features
        init = Init([tensor], {tensor: initial_grads[tensor]} if tensor in initial_grads else None)
        per_task.append(Grad([tensor], inputs, retain_graph=True) << init)
    loop = Stack(per_task)
    if len(tensors) == 1 or parallel_chunk_size == 1:
        return loop
    if parallel_chunk_size is not None:
        return vectorized
    if not graphs_overlap(tensors, excluded=features):
        # Separate heads: in one vectorized pass, every task's row would also run through every
        # other task's head (as zeros), which costs T times the work and the memory of one pass
        # per task (measured in benchmarks/mtl.py: 46 ms and 1 GiB against 8 ms and 16 MiB for
        # 40 linear heads on a 512-feature trunk).
        return loop
    key = (
        "mtl_backward heads",
        tuple(id(input) for input in head_inputs),
        tuple(tensor.shape for tensor in tensors),
        tensors[0].dtype,
    )
    return Fastest([vectorized, loop], key, head_inputs, tensors[0].device)


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


def _trunk_stage(
    outputs: list[Tensor],
    inputs: list[Tensor],
    m: int,
    parallel_chunk_size: int | None,
    retain_graph: bool,
) -> Transform:
    """
    The :class:`Jac` stage backpropagating the ``m`` task rows from the features to the shared
    parameters. With the user's ``parallel_chunk_size``, exactly that; with ``None``, the faster,
    for this graph on this device, of one vectorized pass and the row loop (vmap's batching rules
    do not pay off everywhere, e.g. convolutions on one CPU thread), measured on the first calls.
    ``jac`` and ``backward`` do not choose: their ``None`` means one vectorized pass, as documented.
    """

    if parallel_chunk_size is not None or m <= 1:
        return Jac(outputs, inputs, parallel_chunk_size, retain_graph)
    alternatives = [
        Jac(outputs, inputs, None, retain_graph),
        Jac(outputs, inputs, 1, retain_graph),
    ]
    key = (
        "Jac",
        tuple(id(input) for input in inputs),
        tuple(output.shape for output in outputs),
        outputs[0].dtype,
        m,
    )
    return Fastest(alternatives, key, inputs, outputs[0].device)
