from collections.abc import Iterable

import torch
from torch import Tensor
from torch.distributed import ProcessGroup

from ._fsdp import is_dtensor
from ._marks import mark


def sync_jacobians(tensors: Iterable[Tensor], group: ProcessGroup | None = None) -> None:
    """
    Averages, across the processes of ``group``, the ``.jac`` fields of ``tensors`` and the
    ``.grad`` fields of those of ``tensors`` that have no ``.jac``, in one all-reduce: the step that
    ``DistributedDataParallel`` performs during ``.backward()``, for Jacobian descent.

    Call it between :func:`torchjd.autojac.mtl_backward` (or :func:`torchjd.autojac.backward`) and
    :func:`torchjd.autojac.jac_to_grad`, on all the trained parameters, on every rank. When each
    rank's losses are means over its share of the batch (equal shares), the mean of the ranks'
    Jacobians is the Jacobian of the losses of the global batch, so every rank then aggregates the
    same matrix and ends the step with the ``.grad`` of single-process Jacobian descent on the
    global batch (for a randomized aggregator, seed every rank alike). The task-specific
    parameters' ``.grad`` fields are averaged as DDP would.

    All the tensors are packed into one flat buffer per (device, dtype) pair, usually one, so the
    step costs a single all-reduce of ``m * n_shared + n_task`` elements (``m`` rows of the
    Jacobians), against ``n_shared + n_task`` for DDP. The synchronized fields become views of that
    buffer. Tensors with neither field are skipped, so every rank must pass the same tensors and
    have filled the same fields, with the same shapes. ``all_reduce`` is not differentiable: the
    result does not carry a graph even if the Jacobians were computed with ``create_graph=True``.

    :param tensors: The tensors whose fields to average, e.g. ``model.parameters()``, in the same
        order on every rank.
    :param group: The process group to average over. Defaults to the default process group.
    """

    if isinstance(tensors, Tensor):
        tensors = [tensors]
    tensor_list = list(tensors)
    for index, tensor in enumerate(tensor_list):
        if not isinstance(tensor, Tensor):
            raise TypeError(
                f"Parameter `tensors` should only contain tensors. Element {index} is a "
                f"`{type(tensor).__name__}`."
            )
    for index, tensor in enumerate(tensor_list):
        if is_dtensor(tensor):
            raise ValueError(
                f"Parameter `tensors` contains a DTensor (element {index}), e.g. a parameter "
                "sharded by `torch.distributed.fsdp.fully_shard`. Under FSDP2, `backward` and "
                "`mtl_backward` already average the `.jac` fields of the sharded parameters over "
                "the ranks (and FSDP the `.grad` fields): do not call `sync_jacobians` on them."
            )
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        raise RuntimeError(
            "`sync_jacobians` needs an initialized process group. Call "
            "`torch.distributed.init_process_group` first (torchrun sets up its environment)."
        )

    # (tensor, field, value), in the caller's order, which is what makes the layouts of the ranks'
    # buffers agree.
    entries: list[tuple[Tensor, str, Tensor]] = []
    seen: set[int] = set()
    for tensor in tensor_list:
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        jacobian = getattr(tensor, "jac", None)
        if jacobian is not None:
            entries.append((tensor, "jac", jacobian))
        elif tensor.grad is not None:
            entries.append((tensor, "grad", tensor.grad))

    world_size = torch.distributed.get_world_size(group)
    buckets: dict[tuple[torch.device, torch.dtype], list[tuple[Tensor, str, Tensor]]] = {}
    for entry in entries:
        buckets.setdefault((entry[2].device, entry[2].dtype), []).append(entry)

    with torch.no_grad():
        if world_size > 1:
            flats = [torch.cat([value.reshape(-1) for _, _, value in bucket]) for bucket in buckets.values()]
            # Launch every bucket's all-reduce before waiting for any, so that they overlap. Gloo
            # has no AVG reduction, hence SUM then a division.
            works = [
                torch.distributed.all_reduce(flat, torch.distributed.ReduceOp.SUM, group, async_op=True)
                for flat in flats
            ]
            for work in works:
                work.wait()
            for flat, bucket in zip(flats, buckets.values()):
                flat.div_(world_size)
                offset = 0
                for tensor, field, value in bucket:
                    synchronized = flat[offset : offset + value.numel()].view(value.shape)
                    offset += value.numel()
                    setattr(tensor, field, synchronized)
        for tensor, field, _ in entries:
            if field == "jac":
                mark(tensor.jac)  # type: ignore[attr-defined]


def mark_synchronized(tensors: Iterable[Tensor]) -> None:
    """
    Declares the current ``.jac`` fields of ``tensors`` synchronized, without communicating, so that
    :func:`torchjd.autojac.jac_to_grad` accepts them in a multi-process job.

    ``jac_to_grad`` refuses, when the default process group has several ranks, the ``.jac`` fields of
    parameters that :func:`sync_jacobians` did not average, because that is how
    ``DistributedDataParallel`` users would otherwise silently train diverging replicas. Use this
    function when per-rank Jacobians are what you want, or after synchronizing them in your own way
    (e.g. an ``all_gather`` of the rows for a robust aggregator). The mark lasts until the ``.jac``
    field changes.

    :param tensors: The tensors whose ``.jac`` fields to mark, e.g. ``model.parameters()``.
        Tensors without a ``.jac`` field are ignored.
    """

    if isinstance(tensors, Tensor):
        tensors = [tensors]
    for tensor in tensors:
        jacobian = getattr(tensor, "jac", None)
        if jacobian is not None:
            mark(jacobian)
