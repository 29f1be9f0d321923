from collections.abc import Iterable

import torch
from torch import Tensor

from torchjd.aggregation import Aggregator, WeightedAggregator, Weighting
from torchjd.distributed import _fsdp
from torchjd.distributed._marks import check_synchronized

from ._validation import as_list_of_tensors, check_distinct


def jac_to_grad(
    tensors: Iterable[Tensor],
    /,
    aggregator: Aggregator,
    *,
    retain_jac: bool = False,
    optimize_gramian_computation: bool = False,
) -> Tensor | None:
    """
    Aggregates the ``.jac`` fields of ``tensors`` into their ``.grad`` fields.

    The Jacobians (each ``[m] + tensor.shape``) are seen as one Jacobian matrix ``[m, n]``, with
    ``n`` the total number of elements of the tensors; the aggregator reduces it to a vector ``[n]``,
    which is split back and added to the ``.grad`` fields (created where absent). The ``.jac``
    fields are then deleted, unless ``retain_jac``.

    The ``[m, n]`` matrix is only formed for aggregators that need it (those that are not weighted
    combinations of the rows, such as :class:`~torchjd.aggregation.ConFIG`, and weightings that read
    the matrix itself). A :class:`~torchjd.aggregation.GramianWeightedAggregator` gets its weights
    from the sum of the per-tensor Gramians, and weightings that depend only on the number of rows
    (:class:`~torchjd.aggregation.Mean`, :class:`~torchjd.aggregation.Sum`, ...) need no statistic
    at all; the weights are then applied tensor by tensor and each ``.jac`` is freed as soon as its
    ``.grad`` is written.

    :param tensors: The tensors whose ``.jac`` fields to aggregate, e.g. the parameters that
        require grad. Each must require grad and have a ``.jac`` field of shape
        ``[m] + tensor.shape``, with the same ``m`` for all.
    :param aggregator: The aggregator that reduces the Jacobian matrix to one vector.
    :param retain_jac: Whether to keep the ``.jac`` fields. Defaults to ``False``.
    :param optimize_gramian_computation: Kept for compatibility with torchjd 0.18, where it made a
        :class:`~torchjd.aggregation.GramianWeightedAggregator` compute its Gramian tensor by
        tensor. That is now what always happens (it is faster and uses less memory), so the only
        effect of ``True`` is to check that ``aggregator`` is Gramian-based.
    :returns: The weights ``[m]`` given to the rows when ``aggregator`` is a
        :class:`~torchjd.aggregation.WeightedAggregator`, else ``None``.

    >>> import torch
    >>> from torchjd.aggregation import UPGrad
    >>> from torchjd.autojac import backward, jac_to_grad
    >>>
    >>> param = torch.tensor([1., 2.], requires_grad=True)
    >>> y1 = torch.tensor([1., -1.]) @ param
    >>> y2 = (param ** 2).sum()
    >>> backward([y1, y2])
    >>> param.jac  # The two gradients conflict: their dot product is negative.
    tensor([[ 1., -1.],
            [ 2.,  4.]])
    >>> weights = jac_to_grad([param], UPGrad())
    >>> param.grad  # Has a positive dot product with both rows.
    tensor([2.1000, 1.2000])
    >>> weights
    tensor([1.0000, 0.5500])
    """

    tensor_list = as_list_of_tensors(tensors, "tensors")
    if not tensor_list:
        raise ValueError("Parameter `tensors` should be non-empty.")
    check_distinct(tensor_list, "tensors")
    if not isinstance(aggregator, Aggregator):
        raise TypeError(
            f"Parameter `aggregator` should be an Aggregator. Found `{type(aggregator).__name__}`."
        )
    gramian_weighting = _gramian_weighting(aggregator)
    if optimize_gramian_computation and gramian_weighting is None:
        raise ValueError(
            "Parameter `optimize_gramian_computation=True` requires a GramianWeightedAggregator "
            f"(one whose weights depend only on the Gramian). Found {aggregator}."
        )
    jacobians = _get_jacobians(tensor_list)
    # Several processes training together must aggregate the same (averaged) Jacobian, or their
    # replicas drift apart silently; no-op in a single process. See torchjd.distributed.
    check_synchronized(tensor_list)
    if _fsdp.any_sharded(tensor_list):  # FSDP2: from the all-reduced Gramian of the shards.
        weights, gradients = _fsdp.sharded_jac_to_grad(tensor_list, jacobians, aggregator)
        del jacobians
        for tensor, gradient in zip(tensor_list, gradients):
            _accumulate_grad(tensor, gradient, retain_jac)
        return weights

    # Under autocast (e.g. Lightning's "bf16-mixed"), the products below would come out in low
    # precision and could not be assigned to the .grad of full-precision tensors.
    with torch.autocast(device_type=jacobians[0].device.type, enabled=False):
        if isinstance(aggregator, WeightedAggregator):
            weights = _weights(jacobians, aggregator, gramian_weighting)
            del jacobians  # From here on, each .jac is only referenced by its tensor.
            for tensor in tensor_list:
                gradient = _weighted_sum_of_rows(weights, tensor.jac)
                _accumulate_grad(tensor, gradient, retain_jac)
            return weights

        matrix = torch.cat([_as_matrix(jacobian) for jacobian in jacobians], dim=1)
        del jacobians
        vector = aggregator(matrix)
        del matrix
        gradients = vector.split([tensor.numel() for tensor in tensor_list])
        for tensor, gradient in zip(tensor_list, gradients):
            _accumulate_grad(tensor, gradient.to(device=tensor.device), retain_jac)
        return None


def _gramian_weighting(aggregator: Aggregator) -> Weighting | None:
    """The weighting of the Gramian that ``aggregator`` applies, if it is Gramian-based."""

    return getattr(aggregator, "gramian_weighting", None)


def _weights(
    jacobians: list[Tensor], aggregator: WeightedAggregator, gramian_weighting: Weighting | None
) -> Tensor:
    """The weights ``[m]`` that ``aggregator`` gives to the rows of the Jacobians."""

    if gramian_weighting is not None:
        gramian = _gramian_contribution(jacobians[0])
        for jacobian in jacobians[1:]:
            gramian = gramian + _gramian_contribution(jacobian).to(device=gramian.device)
        return gramian_weighting(gramian)
    weighting = aggregator.weighting
    m = jacobians[0].shape[0]
    if not getattr(weighting, "_needs_statistic", True):
        # Weights that depend only on the number of rows: an empty statistic carries that.
        return weighting(_in_working_precision(jacobians[0].new_empty(m, 0)))
    return weighting(torch.cat([_as_matrix(jacobian) for jacobian in jacobians], dim=1))


def _as_matrix(jacobian: Tensor) -> Tensor:
    return jacobian.reshape(jacobian.shape[0], -1)


def _in_working_precision(matrix: Tensor) -> Tensor:
    # As in the aggregators: float16 and bfloat16 are computed in float32 (a Gramian of float16
    # values overflows from |J_ij| ~ 1e2).
    return matrix.float() if matrix.dtype in (torch.float16, torch.bfloat16) else matrix


def _gramian_contribution(jacobian: Tensor) -> Tensor:
    """``J_i @ J_i.T`` for the Jacobian ``J_i`` of one tensor: the Gramian is their sum."""

    matrix = _in_working_precision(_as_matrix(jacobian))
    return matrix @ matrix.T


def _weighted_sum_of_rows(weights: Tensor, jacobian: Tensor) -> Tensor:
    """``weights @ J_i`` for the Jacobian ``J_i`` of one tensor, in the shape of the tensor."""

    matrix = _in_working_precision(_as_matrix(jacobian))
    gradient = weights.to(dtype=matrix.dtype, device=matrix.device) @ matrix
    return gradient.to(dtype=jacobian.dtype).view(jacobian.shape[1:])


def _accumulate_grad(tensor: Tensor, gradient: Tensor, retain_jac: bool) -> None:
    """Adds ``gradient`` to ``tensor.grad`` (creating it) and frees ``tensor.jac`` if asked."""

    gradient = gradient.view(tensor.shape)
    tensor.grad = gradient if tensor.grad is None else tensor.grad + gradient
    if not retain_jac:
        del tensor.jac


def _get_jacobians(tensors: list[Tensor]) -> list[Tensor]:
    jacobians = []
    for index, tensor in enumerate(tensors):
        if not tensor.requires_grad:
            raise ValueError(
                f"Parameter `tensors` should only contain tensors that require grad, whose `.grad` "
                f"an optimizer would read. Element {index} (shape {list(tensor.shape)}) does not; "
                f"pass e.g. `[p for p in model.parameters() if p.requires_grad]`."
            )
        jacobian = getattr(tensor, "jac", None)
        if jacobian is None:
            raise ValueError(
                f"Parameter `tensors` should only contain tensors with a `.jac` field (filled by "
                f"`backward` or `mtl_backward`). Element {index} (shape {list(tensor.shape)}) has "
                f"none. If it belongs to a frozen layer, filter the tensors with "
                f"`[p for p in model.parameters() if p.requires_grad]`."
            )
        if not isinstance(jacobian, Tensor):
            raise TypeError(
                f"Parameter `tensors` should have `.jac` fields that are tensors. Element {index} "
                f"has a `.jac` of type `{type(jacobian).__name__}`."
            )
        row_shape = _fsdp.local_shape(tensor)  # FSDP2: rows of the local shard
        if jacobian.dim() != len(row_shape) + 1 or jacobian.shape[1:] != row_shape:
            raise ValueError(
                f"Parameter `tensors` should have `.jac` fields of shape [m] + tensor.shape. "
                f"Element {index} (shape {list(row_shape)}) has a `.jac` of shape "
                f"{list(jacobian.shape)}."
            )
        if jacobian.dtype != tensor.dtype or jacobian.device != tensor.device:
            raise ValueError(
                f"Parameter `tensors` should have `.jac` fields with the dtype and device of their "
                f"tensor. Element {index} ({tensor.dtype} on {tensor.device}) has a `.jac` in "
                f"{jacobian.dtype} on {jacobian.device}."
            )
        jacobians.append(jacobian)
    rows = [jacobian.shape[0] for jacobian in jacobians]
    if len(set(rows)) > 1:
        raise ValueError(
            f"Parameter `tensors` should have `.jac` fields with the same number of rows. Found "
            f"{rows}."
        )
    return jacobians
