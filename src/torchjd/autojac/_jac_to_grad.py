from collections.abc import Iterable

import torch
from torch import Tensor

from torchjd.aggregation import Aggregator, GramianWeightedAggregator, WeightedAggregator
from torchjd.distributed import _fsdp
from torchjd.distributed._marks import check_synchronized

from ._validation import as_list_of_tensors, check_distinct


def jac_to_grad(
    tensors: Iterable[Tensor],
    aggregator: Aggregator,
    retain_jac: bool = False,
    optimize_gramian_computation: bool = False,
) -> Tensor | None:
    """
    Aggregates the ``.jac`` fields of ``tensors`` into their ``.grad`` fields.

    The Jacobians (each ``[m] + tensor.shape``) are seen as one Jacobian matrix ``[m, n]``, with
    ``n`` the total number of elements of the tensors; the aggregator reduces it to a vector ``[n]``,
    which is split back and added to the ``.grad`` fields (created where absent). The ``.jac``
    fields are then deleted, unless ``retain_jac``.

    :param tensors: The tensors whose ``.jac`` fields to aggregate, e.g. ``model.parameters()``.
        Each must have a ``.jac`` field, all with the same number of rows ``m``.
    :param aggregator: The aggregator that reduces the Jacobian matrix to one vector.
    :param retain_jac: Whether to keep the ``.jac`` fields. Defaults to ``False``.
    :param optimize_gramian_computation: If ``True``, the aggregator must be a
        :class:`~torchjd.aggregation.GramianWeightedAggregator`: its weights are then computed from
        the sum of the per-tensor Gramians and applied tensor by tensor, so that the concatenated
        ``[m, n]`` matrix is never formed.
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
    tensor([2.0994, 1.2005])
    >>> weights
    tensor([0.9995, 0.5500])
    """

    tensor_list = as_list_of_tensors(tensors, "tensors")
    if not tensor_list:
        raise ValueError("Parameter `tensors` should be non-empty.")
    check_distinct(tensor_list, "tensors")
    if not isinstance(aggregator, Aggregator):
        raise TypeError(
            f"Parameter `aggregator` should be an Aggregator. Found `{type(aggregator).__name__}`."
        )
    if optimize_gramian_computation and not isinstance(aggregator, GramianWeightedAggregator):
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
    else:
        matrices = [jacobian.reshape(jacobian.shape[0], -1) for jacobian in jacobians]
        # Under autocast (e.g. Lightning's "bf16-mixed"), the products below would come out in low
        # precision and could not be assigned to the .grad of full-precision tensors.
        with torch.autocast(device_type=matrices[0].device.type, enabled=False):
            weights, gradients = _aggregate(matrices, aggregator, optimize_gramian_computation)

    for tensor, gradient in zip(tensor_list, gradients):
        gradient = gradient.view(tensor.shape)
        tensor.grad = gradient if tensor.grad is None else tensor.grad + gradient
        if not retain_jac:
            del tensor.jac
    return weights


def _aggregate(
    matrices: list[Tensor], aggregator: Aggregator, optimize_gramian_computation: bool
) -> tuple[Tensor | None, list[Tensor]]:
    """Returns the weights (or None) and the aggregation, split into one vector per matrix."""

    weights: Tensor | None = None
    if optimize_gramian_computation:
        gramian = sum(matrix @ matrix.T for matrix in matrices)
        weights = aggregator.gramian_weighting(gramian)
        gradients = [weights @ matrix for matrix in matrices]
    else:
        matrix = torch.cat(matrices, dim=1)
        if isinstance(aggregator, WeightedAggregator):
            weights = aggregator.weights(matrix)
            vector = weights @ matrix
        else:
            vector = aggregator(matrix)
        gradients = list(vector.split([m.shape[1] for m in matrices]))
    return weights, gradients


def _get_jacobians(tensors: list[Tensor]) -> list[Tensor]:
    jacobians = []
    for index, tensor in enumerate(tensors):
        jacobian = getattr(tensor, "jac", None)
        if jacobian is None:
            raise ValueError(
                f"Parameter `tensors` should only contain tensors with a `.jac` field (filled by "
                f"`backward` or `mtl_backward`). Element {index} (shape {list(tensor.shape)}) has "
                f"none."
            )
        jacobians.append(jacobian)
    rows = [jacobian.shape[0] for jacobian in jacobians]
    if len(set(rows)) > 1:
        raise ValueError(
            f"Parameter `tensors` should have `.jac` fields with the same number of rows. Found "
            f"{rows}."
        )
    return jacobians
