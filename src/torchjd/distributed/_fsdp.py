"""
Jacobian descent on models sharded with FSDP2 (``torch.distributed.fsdp.fully_shard``).

FSDP2 replaces each parameter of a sharded module by a ``DTensor`` holding this rank's shard, and
swaps in an unsharded copy (a plain ``nn.Parameter`` that it all-gathers) around the module's
forward and backward passes. The autograd graph therefore reaches the unsharded copies, not the
``DTensor`` parameters that the user and the optimizer hold. This module connects the two:

- :func:`to_unsharded` maps the sharded parameters that a user passes to ``backward`` or
  ``mtl_backward`` to the unsharded copies that the graph uses;
- :func:`backward_pass` wraps the autograd calls of those functions: FSDP's end-of-backward work
  runs once, after all of them (not after each), and :func:`move_to_shards` then reduce-scatters
  the ``.jac`` fields accumulated on the unsharded copies (one row per objective) onto the sharded
  parameters, averaged over the ranks as FSDP averages gradients, in one collective;
- :func:`sharded_jac_to_grad` is ``jac_to_grad`` on sharded parameters: each rank holds the
  columns ``J_s`` of its shards, so the Gramian ``J Jᵀ = Σ_s J_s J_sᵀ`` is one all-reduce of an
  ``[m, m]`` matrix, from which every rank computes the same weights ``w`` and its own gradient
  shards ``w @ J_s``. The Jacobian is never gathered.

FSDP's internals (``FSDPParam``, its parameter groups) are private to PyTorch: they are only read
here, and only when FSDP is in use.
"""

import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from torchjd.aggregation import Aggregator, GramianWeightedAggregator, WeightedAggregator
from torchjd.aggregation._weighting_bases import ShapeOnlyWeighting

from ._marks import mark


def is_dtensor(tensor: Tensor) -> bool:
    """Whether ``tensor`` is a ``torch.distributed.tensor.DTensor``."""

    # No tensor can be a DTensor before torch.distributed.tensor is imported: checking that first
    # spares every non-distributed user the import (about a second).
    if "torch.distributed.tensor" not in sys.modules:
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


class _Sharding:
    """One FSDP parameter: its sharded and unsharded versions and how it is split."""

    def __init__(self, fsdp_param: Any, param_group: Any) -> None:
        self.fsdp_param = fsdp_param
        self.param_group = param_group

    @property
    def sharded(self) -> Tensor:
        return self.fsdp_param.sharded_param

    @property
    def unsharded(self) -> Tensor | None:
        return getattr(self.fsdp_param, "_unsharded_param", None)

    @property
    def local_shape(self) -> torch.Size:
        return self.sharded.to_local().shape


def _find_shardings() -> dict[int, _Sharding]:
    """
    Every parameter managed by FSDP2 in this process, keyed by the ``id`` of both its sharded and
    its unsharded version.
    """

    if not dist.is_available() or "torch.distributed.fsdp" not in sys.modules:
        return {}
    from torch.distributed._composable_state import _module_state_mapping
    from torch.distributed.fsdp import FSDPModule

    shardings: dict[int, _Sharding] = {}
    for module in list(_module_state_mapping.keys()):
        if not isinstance(module, FSDPModule):
            continue
        state = module._get_fsdp_state()
        for param_group in getattr(state, "_fsdp_param_groups", []):
            for fsdp_param in param_group.fsdp_params:
                sharding = _Sharding(fsdp_param, param_group)
                shardings[id(sharding.sharded)] = sharding
                if sharding.unsharded is not None:
                    shardings[id(sharding.unsharded)] = sharding
    return shardings


def to_unsharded(tensors: list[Tensor], m: int | None, name: str) -> list[Tensor]:
    """
    Returns ``tensors`` with each FSDP-sharded parameter replaced by the unsharded parameter that
    the forward pass used (the leaf of the graph), after checking that its ``.jac`` field, if any,
    has the ``[m] + local shard shape`` that the coming accumulation will add to.
    """

    if "torch.distributed.fsdp" not in sys.modules and not any(is_dtensor(t) for t in tensors):
        return tensors
    shardings = _find_shardings()
    result = []
    for index, tensor in enumerate(tensors):
        sharding = shardings.get(id(tensor))
        if sharding is None:
            if is_dtensor(tensor):
                raise ValueError(
                    f"Parameter `{name}` contains a DTensor (element {index}) that is not a "
                    "parameter of a module sharded with `torch.distributed.fsdp.fully_shard`. Only "
                    "FSDP2-sharded DTensor parameters are supported."
                )
            result.append(tensor)
            continue
        _check_supported(sharding, name, index)
        jacobian = getattr(sharding.sharded, "jac", None)
        expected = [m, *sharding.local_shape]
        if m is not None and jacobian is not None and list(jacobian.shape) != expected:
            raise ValueError(
                f"Parameter `{name}` contains an FSDP-sharded parameter (element {index}) whose "
                f"`.jac` field has shape {list(jacobian.shape)} instead of {expected} (one row per "
                "objective, then the local shard's shape)."
            )
        if sharding.unsharded is None:
            raise ValueError(
                f"Parameter `{name}` contains an FSDP-sharded parameter (element {index}) that no "
                "forward pass has used yet, so it cannot be part of the graph."
            )
        result.append(sharding.unsharded)
    return result


def _check_supported(sharding: _Sharding, name: str, index: int) -> None:
    from torch.distributed.fsdp._fully_shard._fsdp_common import HSDPMeshInfo

    if isinstance(sharding.param_group.mesh_info, HSDPMeshInfo):
        raise ValueError(
            f"Parameter `{name}` contains a parameter (element {index}) sharded by "
            "`fully_shard` on a 2-D (HSDP) mesh. Jacobian descent supports 1-D FSDP meshes only."
        )


def _fsdp_roots() -> list[Any]:
    """The root FSDP state of each tree of ``fully_shard``-ed modules that has run a forward."""

    if not dist.is_available() or "torch.distributed.fsdp" not in sys.modules:
        return []
    from torch.distributed._composable_state import _module_state_mapping
    from torch.distributed.fsdp import FSDPModule

    roots = []
    for module in list(_module_state_mapping.keys()):
        if isinstance(module, FSDPModule):
            state = module._get_fsdp_state()
            if getattr(state, "_is_root", None) and hasattr(state, "_state_ctx"):
                roots.append(state)
    return roots


@contextmanager
def backward_pass(tensors: list[Tensor]) -> Iterator[None]:
    """
    Runs the autograd calls of ``backward`` or ``mtl_backward`` as one FSDP backward pass, then
    moves the ``.jac`` fields of ``tensors`` that are FSDP's unsharded parameters to the sharded
    ones (:func:`move_to_shards`).

    FSDP queues its end-of-backward callback (reshard every group, reduce-scatter the ``.grad``
    fields) in each autograd call: ``mtl_backward`` makes one per task and one for the trunk, and
    the callback of each would reshard what the next call needs again (the root's parameters, the
    layers prefetched for the trunk's backward), all-gathering them once more. Marking the callback
    as already queued for the duration, and running it once at the end, makes the whole function
    cost the all-gathers of one ordinary backward pass.
    """

    roots = [r for r in _fsdp_roots() if not r._state_ctx.post_backward_final_callback_queued]
    for root in roots:
        root._state_ctx.post_backward_final_callback_queued = True
    try:
        yield
    finally:
        for root in roots:  # Also after an error: it returns FSDP to its idle, resharded state.
            root._state_ctx.post_backward_final_callback_queued = False
            root._root_post_backward_final_callback()
    move_to_shards(tensors)


def move_to_shards(tensors: Iterable[Tensor]) -> None:
    """
    Moves what ``backward`` or ``mtl_backward`` accumulated on FSDP's unsharded parameters to the
    sharded ones: each ``.jac`` field ``[m] + unsharded shape`` becomes, summed over the ranks and
    divided as FSDP divides gradients (by the number of ranks), ``[m] + local shard shape`` on the
    ``DTensor`` parameter (added to its ``.jac``, if any); a ``.grad`` field that FSDP has not
    reduce-scattered itself (FSDP does so in its backward hooks, which may run before a task
    gradient is written) becomes part of the ``DTensor`` gradient. One reduce-scatter per process
    group and dtype, usually one, carries everything.
    """

    if "torch.distributed.fsdp" not in sys.modules:
        return
    shardings = _find_shardings()
    # (sharding, field, value [rows, *unsharded shape]), keyed by process group and dtype.
    buckets: dict[tuple[Any, torch.dtype], list[tuple[_Sharding, str, Tensor]]] = {}
    for tensor in dict.fromkeys(tensors):
        sharding = shardings.get(id(tensor))
        if sharding is None or tensor is sharding.sharded:
            continue
        entry: tuple[_Sharding, str, Tensor] | None = None
        jacobian = getattr(tensor, "jac", None)
        if jacobian is not None:
            entry = (sharding, "jac", jacobian)
            del tensor.jac  # type: ignore[attr-defined]
        elif tensor.grad is not None and sharding.param_group.reduce_grads:
            entry = (sharding, "grad", tensor.grad.unsqueeze(0))
            tensor.grad = None
        if entry is not None:
            key = (sharding.param_group.mesh_info.shard_process_group, entry[2].dtype)
            buckets.setdefault(key, []).append(entry)

    with torch.no_grad():
        for (group, _), entries in buckets.items():
            shards = _reduce_scatter(entries, group)
            for (sharding, field, _), shard in zip(entries, shards):
                shard = shard.to(sharding.sharded.dtype)
                if field == "jac":
                    previous = getattr(sharding.sharded, "jac", None)
                    jacobian = shard if previous is None else previous + shard
                    mark(jacobian)  # Averaged over the ranks: what `jac_to_grad` checks for.
                    sharding.sharded.jac = jacobian  # type: ignore[attr-defined]
                else:
                    gradient = sharding.fsdp_param.to_sharded_dtensor(shard[0].contiguous())
                    previous = sharding.sharded.grad
                    sharding.sharded.grad = gradient if previous is None else previous + gradient


def _reduce_scatter(entries: list[tuple[_Sharding, str, Tensor]], group: Any) -> list[Tensor]:
    """
    Returns, for each ``value`` ``[rows, *unsharded shape]`` of ``entries``, this rank's shard
    ``[rows, *local shard shape]`` of the mean of the ranks' values, all sent in one
    reduce-scatter.
    """

    world_size = dist.get_world_size(group)
    # FSDP pads every shard along the shard dimension to ceil(size / world_size) (the last ranks
    # may hold fewer rows, or none): rank r's part of each value is then one slice of a padded copy.
    per_rank: list[Tensor] = []
    padded_shapes: list[list[int]] = []
    for sharding, _, value in entries:
        rows = value.shape[0]
        dim = sharding.fsdp_param.fsdp_placement.dim + 1
        padded_shape = [rows, *sharding.fsdp_param.padded_sharded_param_size]
        chunk = padded_shape[dim]
        before, after = padded_shape[:dim], padded_shape[dim + 1 :]
        padded = value.new_zeros([*before, world_size * chunk, *after])
        padded.narrow(dim, 0, value.shape[dim]).copy_(value)
        split = padded.view([*before, world_size, chunk, *after])
        per_rank.append(split.movedim(dim, 0).reshape(world_size, -1))
        padded_shapes.append(padded_shape)

    send = torch.cat(per_rank, dim=1)  # [world_size, total]: row r is what rank r receives.
    if world_size > 1:
        received = send.new_empty(send.shape[1])
        # `reduce_scatter_single` is the new name of `reduce_scatter_tensor` (deprecated in 2.13).
        reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
        reduce_scatter(received, send.reshape(-1), group=group)
    else:
        received = send[0]
    divide_factor = entries[0][0].param_group.gradient_divide_factor or world_size
    received.div_(divide_factor)

    shards = []
    offset = 0
    for (sharding, _, _), padded_shape in zip(entries, padded_shapes):
        numel = torch.Size(padded_shape).numel()
        padded_shard = received[offset : offset + numel].view(padded_shape)
        offset += numel
        dim = sharding.fsdp_param.fsdp_placement.dim + 1
        shards.append(padded_shard.narrow(dim, 0, sharding.local_shape[dim - 1]))
    return shards


def any_sharded(tensors: Sequence[Tensor]) -> bool:
    """Whether some of ``tensors`` are DTensors (FSDP2's sharded parameters)."""

    return any(is_dtensor(tensor) for tensor in tensors)


def local_shape(tensor: Tensor) -> torch.Size:
    """The shape of the rows of ``tensor.jac``: the local shard's for a DTensor, else its own."""

    return tensor.to_local().shape if is_dtensor(tensor) else tensor.shape


def sharded_jac_to_grad(
    tensors: list[Tensor], jacobians: list[Tensor], aggregator: Aggregator
) -> tuple[Tensor, list[Tensor]]:
    """
    ``jac_to_grad``'s aggregation when some of ``tensors`` are FSDP-sharded DTensor parameters,
    whose ``.jac`` fields hold the rows of their local shards: returns the weights ``[m]`` (the same
    on every rank) and the gradient of each tensor (a DTensor for a sharded one).
    """

    if not _is_shape_only(aggregator) and not isinstance(aggregator, GramianWeightedAggregator):
        raise ValueError(
            "Parameter `aggregator` should be a GramianWeightedAggregator (or a weighted "
            "aggregator whose weights depend only on the number of rows, like Mean) when "
            "`tensors` contains FSDP-sharded parameters, so that it can aggregate from the "
            f"all-reduced Gramian without gathering the Jacobian. Found {aggregator}, which needs "
            "the Jacobian matrix itself. Use a Gramian-based aggregator such as UPGrad, MGDA, "
            "DualProj or IMTLG instead."
        )
    from torch.distributed.tensor import DTensor, Replicate, Shard

    m = jacobians[0].shape[0]
    matrices = []
    for index, (tensor, jacobian) in enumerate(zip(tensors, jacobians)):
        if isinstance(tensor, DTensor):
            expected = [m, *tensor.to_local().shape]
            if list(jacobian.shape) != expected:
                raise ValueError(
                    f"Parameter `tensors` contains a sharded (DTensor) parameter (element {index}) "
                    f"whose `.jac` field has shape {list(jacobian.shape)} instead of {expected} "
                    "(one row per objective, then the local shard's shape)."
                )
            if not all(isinstance(p, (Shard, Replicate)) for p in tensor.placements):
                raise ValueError(
                    f"Parameter `tensors` contains a DTensor (element {index}) with placements "
                    f"{tensor.placements}: only Shard and Replicate placements are supported."
                )
        matrices.append(jacobian.reshape(m, -1))

    with torch.autocast(device_type=matrices[0].device.type, enabled=False):
        if isinstance(aggregator, GramianWeightedAggregator):
            weights = _weights_from_sharded_gramian(tensors, matrices, aggregator)
        else:  # Mean, Sum, Constant, Random: no Gramian, no communication.
            assert isinstance(aggregator, WeightedAggregator)
            weights = aggregator.weighting(matrices[0].new_zeros(m, 0))
        gradients = []
        for tensor, matrix, jacobian in zip(tensors, matrices, jacobians):
            local = (weights @ matrix).view(jacobian.shape[1:])
            if isinstance(tensor, DTensor):
                mesh, placements = tensor.device_mesh, tensor.placements
                local = DTensor.from_local(
                    local, mesh, placements, shape=tensor.shape, stride=tensor.stride()
                )
            gradients.append(local)
    return weights, gradients


def _is_shape_only(aggregator: Aggregator) -> bool:
    """Whether ``aggregator``'s weights depend only on the number of rows (Mean, Sum, ...)."""

    return isinstance(aggregator, WeightedAggregator) and isinstance(
        aggregator.weighting, ShapeOnlyWeighting
    )


def _weights_from_sharded_gramian(
    tensors: list[Tensor], matrices: list[Tensor], aggregator: GramianWeightedAggregator
) -> Tensor:
    """
    The weights from the Gramian: the sum of the shards' Gramians, all-reduced over the ranks that
    hold the shards, plus the Gramians of the unsharded (replicated) tensors, counted once.
    """

    from torch.distributed.tensor import DTensor, Shard

    replicated: Tensor | None = None
    sharded: dict[tuple[Any, ...], Tensor] = {}  # keyed by the process groups holding the shards
    for tensor, matrix in zip(tensors, matrices):
        gramian = matrix @ matrix.T
        if isinstance(tensor, DTensor):
            mesh = tensor.device_mesh
            key = tuple(
                mesh.get_group(dim)
                for dim, placement in enumerate(tensor.placements)
                if isinstance(placement, Shard)
            )
            previous = sharded.get(key)
            sharded[key] = gramian if previous is None else previous + gramian
        else:
            replicated = gramian if replicated is None else replicated + gramian
    total = replicated
    for groups, gramian in sharded.items():
        for group in groups:  # Summing over each sharded mesh dimension in turn.
            dist.all_reduce(gramian, group=group)
        total = gramian if total is None else total + gramian
    assert total is not None
    # The all-reduce gives every rank the same Gramian, hence the same weights (and, for a stateful
    # weighting, the same state).
    return aggregator.gramian_weighting(total)
