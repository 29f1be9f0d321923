import sys
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from torchjd.autojac._graph import find_vmap_incompatibility


class VmapFallbackWarning(UserWarning):
    """Warns that Jacobian rows were computed one by one because ``torch.vmap`` could not be used."""


def vjp(
    outputs: Sequence[Tensor],
    inputs: Sequence[Tensor],
    grad_outputs: Sequence[Tensor],
    retain_graph: bool,
    create_graph: bool,
    is_grads_batched: bool = False,
) -> list[Tensor]:
    """
    Vector-Jacobian product(s) of ``outputs`` with respect to ``inputs``, with zeros for the inputs
    that the outputs do not reach. With ``is_grads_batched``, each grad output has a leading
    dimension ``[k]`` and so does each result.
    """

    grads = torch.autograd.grad(
        outputs,
        inputs,
        grad_outputs,
        retain_graph=retain_graph,
        create_graph=create_graph,
        allow_unused=True,
        is_grads_batched=is_grads_batched,
    )
    leading = (grad_outputs[0].shape[0],) if is_grads_batched else ()
    return [
        torch.zeros(leading + tuple(i.shape), dtype=i.dtype, device=i.device) if g is None else g
        for g, i in zip(grads, inputs)
    ]


def _warn_fallback(cause: str) -> None:
    warnings.warn(
        f"Computing the Jacobian one row at a time because torch.vmap cannot be used: {cause}. "
        f"Pass `parallel_chunk_size=1` to choose this explicitly and silence this warning.",
        VmapFallbackWarning,
        stacklevel=_stacklevel_outside_torchjd(),
    )


def _stacklevel_outside_torchjd() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside of torchjd."""

    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("torchjd"):
        frame = frame.f_back
        level += 1
    return level


def batched_vjp(
    outputs: Sequence[Tensor],
    inputs: Sequence[Tensor],
    jac_outputs: Sequence[Tensor],
    chunk_size: int | None,
    retain_graph: bool,
    create_graph: bool,
) -> list[Tensor]:
    """
    Returns the Jacobians ``[m] + input.shape`` obtained by backpropagating the ``m`` rows of
    ``jac_outputs`` (each ``[m] + output.shape``), ``chunk_size`` rows per vectorized pass (all at
    once if ``None``, one by one without ``torch.vmap`` if 1).

    Where ``torch.vmap`` cannot run the graph, the rows are computed one by one instead, with a
    :class:`VmapFallbackWarning`; the result is the same.
    """

    if not inputs:
        return []
    m = jac_outputs[0].shape[0]
    if m == 0:
        return [torch.zeros((0,) + tuple(i.shape), dtype=i.dtype, device=i.device) for i in inputs]

    chunk_size = m if chunk_size is None else chunk_size
    # As in torch.autograd.grad: the graph of the result needs the original graph's buffers.
    retain_graph = retain_graph or create_graph
    if chunk_size > 1:
        # Known incompatibilities are detected before anything runs: a failed vectorized pass may
        # already have freed part of the graph, which would make the fallback impossible.
        cause = find_vmap_incompatibility(outputs, inputs)
        if cause is not None:
            _warn_fallback(cause)
            chunk_size = 1

    jacobians = _Rows(m, create_graph)
    fallback_cause: str | None = None
    start = 0
    while start < m:
        stop = min(start + chunk_size, m)
        retain = retain_graph or stop < m
        rows = [j[start:stop] for j in jac_outputs]
        if stop - start == 1:
            try:
                jacobians.add(start, _one_row(outputs, inputs, rows, retain, create_graph))
            except RuntimeError as error:
                if fallback_cause is None or not _is_freed_graph_error(error):
                    raise
                raise RuntimeError(
                    f"torch.vmap could not run the graph ({fallback_cause}) and its failed pass "
                    "had already freed part of the graph, so the rows could not be computed one "
                    "by one instead. Pass `parallel_chunk_size=1` (or `retain_graph=True`)."
                ) from error
        else:
            try:
                chunk = vjp(outputs, inputs, rows, retain, create_graph, is_grads_batched=True)
                jacobians.add(start, chunk)
            except RuntimeError as error:
                if _is_freed_graph_error(error):
                    raise  # Not a limitation of torch.vmap: the row-by-row path would fail too.
                fallback_cause = f"{type(error).__name__}: {str(error).splitlines()[0]}"
                _warn_fallback(fallback_cause)
                chunk_size = 1
                continue  # Redo the same rows, one by one.
        start = stop
    return jacobians.result()


class _Rows:
    """
    Collects the chunks of rows of the Jacobians into ``[m] + input.shape`` tensors, written in
    place as they come (so that a row loop needs the memory of the result and one row, not twice
    the result), except with ``create_graph``, where they are concatenated to stay differentiable.
    """

    def __init__(self, m: int, create_graph: bool):
        self.m = m
        self.create_graph = create_graph
        self.chunks: list[list[Tensor]] = []
        self.jacobians: list[Tensor] | None = None

    def add(self, start: int, chunk: list[Tensor]) -> None:
        if self.create_graph or (start == 0 and chunk and chunk[0].shape[0] == self.m):
            self.chunks.append(chunk)  # All the rows at once needs no copy.
            return
        if self.jacobians is None:
            self.jacobians = [c.new_empty((self.m,) + tuple(c.shape[1:])) for c in chunk]
        for jacobian, rows in zip(self.jacobians, chunk):
            jacobian[start : start + rows.shape[0]] = rows

    def result(self) -> list[Tensor]:
        if self.jacobians is not None:
            return self.jacobians
        if len(self.chunks) == 1:
            return self.chunks[0]
        return [torch.cat(column) for column in zip(*self.chunks)]


def _is_freed_graph_error(error: RuntimeError) -> bool:
    return "backward through the graph a second time" in str(error)


def _one_row(
    outputs: Sequence[Tensor],
    inputs: Sequence[Tensor],
    rows: Sequence[Tensor],
    retain_graph: bool,
    create_graph: bool,
) -> list[Tensor]:
    grads = vjp(outputs, inputs, [r[0] for r in rows], retain_graph, create_graph)
    return [g.unsqueeze(0) for g in grads]
