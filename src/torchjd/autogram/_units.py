"""
The per-module pieces of the Gramian.

Each parameterized module the engine covers is a *unit*. The parameters of a unit enter the
network only through the unit's forward calls, so the rows of the Jacobian restricted to a unit's
parameters are determined by each call's inputs and by the gradient of the objectives with respect
to the call's outputs (the "output gradients"). A unit turns these into its contribution
``J_unit @ J_unit.T`` to the Gramian; the engine sums the contributions of all units.

Rows are organized as ``[num_samples, rows_per_sample]``. With a batch dimension, a row is a pair
(sample ``b``, objective ``j`` of that sample), and the output gradient of row ``(b, j)`` is zero
outside sample ``b``, so one backward pass per ``j`` gives the output gradients of all samples at
once. Without a batch dimension, every row may touch every sample: the unit sees a single "sample"
holding the whole batch, and ``rows_per_sample = m``.
"""

import math
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vjp, vmap

from ._tree import flatten_tensors, map_tensors

# The kernel path of `_outer_product_gramian` materializes intermediates of this many elements at
# most; beyond that the per-row gradients are materialized instead (memory O(rows * params_unit)).
_MAX_KERNEL_ELEMENTS = 2**26


@dataclass
class Rows:
    """How the rows of the Gramian being computed relate to the samples."""

    batched: bool
    num_samples: int
    rows_per_sample: int

    @property
    def count(self) -> int:
        return self.num_samples * self.rows_per_sample


class Call:
    """One recorded forward call of a unit: its detached inputs and outputs."""

    __slots__ = (
        "__weakref__",
        "args",
        "input_versions",
        "inputs",
        "kwargs",
        "num_outputs",
        "output_grads",
        "output_versions",
        "outputs",
        "released",
    )

    def __init__(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        inputs: list[Tensor],
        num_outputs: int,
        outputs: list[Tensor],
    ) -> None:
        self.args = args
        self.kwargs = kwargs
        self.inputs = inputs  # the distinct tensors of args and kwargs, detached
        self.input_versions = [t._version for t in inputs]
        self.num_outputs = num_outputs
        self.outputs = outputs  # the tensors of the output, detached, if kept (else empty)
        self.output_versions = [t._version for t in outputs]
        # Filled by the engine for one computation: gradient rows with respect to each output
        # tensor, ``[rows, *output.shape]``, or None where the objectives do not reach it.
        self.output_grads: list[Tensor | None] = []
        self.released = False

    def release(self) -> None:
        """Drops the recorded tensors, once a backward pass has consumed the graph."""

        self.args, self.kwargs, self.inputs, self.outputs = (), {}, [], []
        self.released = True

    def rebuild(self, inputs: list[Tensor]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Returns ``(args, kwargs)`` with the recorded input tensors replaced by ``inputs``."""

        replacement = {id(old): new for old, new in zip(self.inputs, inputs)}
        args = map_tensors(self.args, lambda t: replacement[id(t)])
        kwargs = map_tensors(self.kwargs, lambda t: replacement[id(t)])
        return args, kwargs


def record_call(args: tuple[Any, ...], kwargs: dict[str, Any], output: Any, keep_outputs: bool) -> Call:
    """
    Detaches what a forward call needs to be replayed, keeping the identity of repeated inputs.
    Outputs are kept only if asked: holding them would keep activations alive that autograd may
    not need.
    """

    output_tensors = [output] if isinstance(output, Tensor) else flatten_tensors(output)
    outputs = [t.detach() for t in output_tensors] if keep_outputs else []
    if not kwargs and len(args) == 1 and isinstance(args[0], Tensor):
        # The common case (Linear, Conv, ...), kept cheap since it runs on every forward call.
        x = args[0].detach()
        return Call((x,), {}, [x], len(output_tensors), outputs)

    detached: dict[int, Tensor] = {}

    def detach(t: Tensor) -> Tensor:
        if id(t) not in detached:
            detached[id(t)] = t.detach()
        return detached[id(t)]

    args = map_tensors(args, detach)
    kwargs = map_tensors(kwargs, detach)
    return Call(args, kwargs, list(detached.values()), len(output_tensors), outputs)


def _layout_message(what: str, num_samples: int, dim: int, shape: tuple[int, ...]) -> str:
    return (
        f"Expected {what} to have the batch size {num_samples} (the size of dimension `batch_dim` "
        f"of the output) in dimension {dim}: with `batch_dim` set, the inputs and outputs of the "
        f"engine's modules must be batched on their first dimension. Found shape {shape}. Use "
        "batch-first layouts (e.g. `batch_first=True`), or `batch_dim=None`."
    )


def _per_sample(tensor: Tensor, dim: int, rows: Rows, what: str) -> Tensor:
    """``[num_samples, ...]`` view of a module input: the batch dimension first, or a new one."""

    if not rows.batched:
        return tensor.unsqueeze(0)
    if tensor.dim() <= dim or tensor.shape[dim] != rows.num_samples:
        raise ValueError(_layout_message(what, rows.num_samples, dim, tuple(tensor.shape)))
    return tensor.movedim(dim, 0)


def _per_sample_grad(grad: Tensor, dim: int, rows: Rows, what: str) -> Tensor:
    """``[num_samples, rows_per_sample, ...]`` view of output-gradient rows ``[r, *shape]``."""

    if not rows.batched:
        return grad.unsqueeze(0)
    if grad.dim() <= dim + 1 or grad.shape[dim + 1] != rows.num_samples:
        raise ValueError(_layout_message(what, rows.num_samples, dim, tuple(grad.shape[1:])))
    return grad.movedim(dim + 1, 0)


def _cat(tensors: list[Tensor], dim: int) -> Tensor:
    """Concatenates the positions of several calls of a module (no copy for a single call)."""

    return tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim)


def _gramian_of_rows(per_row: Tensor) -> Tensor:
    """Gramian of per-row gradients ``[num_samples, rows_per_sample, ...]`` as ``[r, r]``."""

    flat = per_row.reshape(per_row.shape[0] * per_row.shape[1], -1)
    return flat @ flat.T


def _outer_product_gramian(a: Tensor, d: Tensor, with_ones: bool = False) -> Tensor:
    """
    Gramian of the rows ``g[b, j] = sum_s outer(d[b, j, s], a[b, s])``.

    :param a: Inputs ``[num_samples, S, i]`` (S positions, e.g. tokens or convolution patches).
    :param d: Output gradients ``[num_samples, rows_per_sample, S, o]``.
    :param with_ones: Whether to append a constant 1 to every input, which adds the rows of a bias.
    :returns: ``[num_samples * rows_per_sample, num_samples * rows_per_sample]``.
    """

    b, s, i = a.shape
    k, o = d.shape[1], d.shape[3]
    r = b * k
    i_total = i + int(with_ones)
    if s == 1:
        # <outer(d, a), outer(d', a')> = <d, d'> <a, a'>: two small Gramians.
        a_gramian = a[:, 0] @ a[:, 0].T  # [B, B]
        if with_ones:
            a_gramian += 1.0
        d_flat = d.reshape(r, o)
        d_gramian = d_flat @ d_flat.T
        if k == 1:
            return d_gramian.mul_(a_gramian)
        return d_gramian.view(b, k, b, k).mul_(a_gramian[:, None, :, None]).reshape(r, r)

    materialize_cost = r * s * o * i_total + r * r * o * i_total
    kernel_cost = (b * s) ** 2 * i + (b * s) ** 2 * k * o + r * r * s * o
    kernel_size = (b * s) ** 2 + b * s * b * k * o
    if kernel_cost < materialize_cost and kernel_size <= _MAX_KERNEL_ELEMENTS:
        a_flat = a.reshape(b * s, i)
        a_gramian = (a_flat @ a_flat.T).view(b, s, b, s)  # [b, s, c, t]
        if with_ones:
            a_gramian += 1.0
        # mixed[b, s, c, l, o] = sum_t a_gramian[b, s, c, t] d[c, l, t, o]
        mixed = torch.einsum("bsct,clto->bsclo", a_gramian, d)
        return torch.einsum("bkso,bsclo->bkcl", d, mixed).reshape(r, r)

    # As a batched matmul on views, so that strided inputs (convolution patches) are not copied.
    per_row = torch.matmul(d.transpose(2, 3).reshape(b, k * o, s), a).view(b, k, o * i)
    gramian = _gramian_of_rows(per_row)
    if with_ones:  # the bias rows, without copying the inputs to append a column of ones
        gramian += _gramian_of_rows(d.sum(2))
    return gramian


class Unit(ABC):
    """A module whose parameters the engine covers, and how to get its share of the Gramian."""

    keeps_outputs = False  # whether gramian() needs the recorded outputs

    def __init__(self, module: nn.Module, name: str) -> None:
        self.module = module
        self.name = name

    def describe(self) -> str:
        return f"`{self.name}` ({type(self.module).__name__})" if self.name else type(self.module).__name__

    def parameters(self) -> list[nn.Parameter]:
        return list(self.module.parameters())

    def check_versions(self, call: Call) -> None:
        for tensor, version in zip(call.inputs, call.input_versions):
            if tensor._version != version:
                raise RuntimeError(
                    f"An input of module {self.describe()} was modified in place after the forward "
                    "pass; autogram needs the values the module saw."
                )

    @abstractmethod
    def gramian(self, calls: list[Call], rows: Rows, sample_dim: int) -> Tensor | None:
        """The contribution ``[r, r]`` of this unit (None if nothing); ``sample_dim`` is the batch
        dimension of its inputs and outputs."""


class LinearUnit(Unit):
    """``nn.Linear``: a row's weight gradient is a sum over positions of outer products."""

    module: nn.Linear

    def gramian(self, calls: list[Call], rows: Rows, sample_dim: int) -> Tensor | None:
        weight, bias = self.module.weight, self.module.bias
        inputs, grads = [], []
        for call in calls:
            self.check_versions(call)
            grad = call.output_grads[0]
            what = f"the input of module {self.describe()}"
            x = _per_sample(call.inputs[0], sample_dim, rows, what)
            d = _per_sample_grad(grad, sample_dim, rows, f"the output of module {self.describe()}")
            inputs.append(x.reshape(rows.num_samples, -1, weight.shape[1]))
            grads.append(d.reshape(rows.num_samples, rows.rows_per_sample, -1, weight.shape[0]))
        train_bias = bias is not None and bias.requires_grad
        return _linear_gramian(weight.requires_grad, train_bias, _cat(inputs, 1), _cat(grads, 2))


def _linear_gramian(train_weight: bool, train_bias: bool, a: Tensor, d: Tensor) -> Tensor | None:
    """Gramian of the rows of a linear map's weight ``[o, i]`` and bias ``[o]``, if trainable."""

    if not train_weight:
        if not train_bias:
            return None
        a = a[:, :, :0]  # only the constant input of the bias remains
    return _outer_product_gramian(a.to(d.dtype), d, with_ones=train_bias)


class ConvUnit(Unit):
    """``nn.Conv1d`` / ``nn.Conv2d`` with zero padding: a linear layer applied to every patch."""

    module: nn.Conv1d | nn.Conv2d

    def gramian(self, calls: list[Call], rows: Rows, sample_dim: int) -> Tensor | None:
        conv = self.module
        spatial = conv.weight.dim() - 2
        groups = conv.groups
        c_in, c_out = conv.in_channels, conv.out_channels
        b, k = rows.num_samples, rows.rows_per_sample
        patches_list, grads_list = [], []
        for call in calls:
            self.check_versions(call)
            x = _per_sample(call.inputs[0], sample_dim, rows, f"the input of module {self.describe()}")
            d = _per_sample_grad(
                call.output_grads[0], sample_dim, rows, f"the output of module {self.describe()}"
            )
            # Both 1d and 2d go through 2d unfolding, with a height of 1 for 1d.
            x = x.reshape(-1, c_in, *x.shape[-spatial:])
            if spatial == 1:
                x = x.unsqueeze(2)
            patches = F.unfold(
                x.to(d.dtype),
                kernel_size=_pair(conv.kernel_size, spatial),
                dilation=_pair(conv.dilation, spatial),
                padding=_pair_padding(conv.padding, spatial),
                stride=_pair(conv.stride, spatial),
            )  # [b * n, c_in * kernel, L], n > 1 only without batch dimension
            n, length = patches.shape[0] // b, patches.shape[2]
            # Views (copies only when n > 1): patches [b, groups, n * L, c_in / groups * kernel]
            # and output gradients [b, groups, k, n * L, c_out / groups], positions in (n, L) order.
            patches = patches.view(b, n, groups, -1, length).permute(0, 2, 1, 4, 3)
            patches_list.append(patches.reshape(b, groups, n * length, patches.shape[-1]))
            d = d.reshape(b, k, n, groups, c_out // groups, length).permute(0, 3, 1, 2, 5, 4)
            grads_list.append(d.reshape(b, groups, k, n * length, c_out // groups))
        a, d = _cat(patches_list, 2), _cat(grads_list, 3)

        train_weight = conv.weight.requires_grad
        train_bias = conv.bias is not None and conv.bias.requires_grad
        gramian = None
        for g in range(groups):
            # The weight of a group only sees its input channels; the bias of its output channels
            # acts like one more constant input.
            contribution = _linear_gramian(train_weight, train_bias, a[:, g], d[:, g])
            if contribution is not None:
                gramian = contribution if gramian is None else gramian + contribution
        return gramian


def _pair(value: Any, spatial: int) -> tuple[int, int]:
    value = tuple(value) if isinstance(value, (tuple, list)) else (value,) * spatial
    return (1, value[0]) if spatial == 1 and len(value) == 1 else tuple(value)  # type: ignore


def _pair_padding(value: Any, spatial: int) -> tuple[int, int]:
    value = tuple(value) if isinstance(value, (tuple, list)) else (value,) * spatial
    return (0, value[0]) if spatial == 1 else tuple(value)  # type: ignore


class EmbeddingUnit(Unit):
    """``nn.Embedding``: a row's gradient is a sum of output gradients scattered to its indices."""

    module: nn.Embedding

    def gramian(self, calls: list[Call], rows: Rows, sample_dim: int) -> Tensor | None:
        embedding = self.module
        if not embedding.weight.requires_grad:
            return None
        b, k = rows.num_samples, rows.rows_per_sample
        indices_list, grads_list = [], []
        for call in calls:
            self.check_versions(call)
            what = f"the input of module {self.describe()}"
            indices = _per_sample(call.inputs[0], sample_dim, rows, what).reshape(b, -1)
            d = _per_sample_grad(
                call.output_grads[0], sample_dim, rows, f"the output of module {self.describe()}"
            ).reshape(b, k, -1, embedding.embedding_dim)
            if embedding.padding_idx is not None:
                d = d * (indices != embedding.padding_idx)[:, None, :, None].to(d.dtype)
            indices_list.append(indices)
            grads_list.append(d)
        indices, d = _cat(indices_list, 1), _cat(grads_list, 2)
        # An embedding lookup is a linear layer applied to one-hot vectors; only the rows of the
        # table that the batch touches matter.
        _, inverse = torch.unique(indices, return_inverse=True)
        one_hot = F.one_hot(inverse, int(inverse.max()) + 1).to(d.dtype)
        return _outer_product_gramian(one_hot, d)


class LayerNormUnit(Unit):
    """``nn.LayerNorm``: elementwise affine parameters on the normalized input."""

    module: nn.LayerNorm

    def gramian(self, calls: list[Call], rows: Rows, sample_dim: int) -> Tensor | None:
        norm = self.module
        weight, bias = norm.weight, norm.bias
        train_weight = weight is not None and weight.requires_grad
        train_bias = bias is not None and bias.requires_grad
        if not (train_weight or train_bias):
            return None
        b, k = rows.num_samples, rows.rows_per_sample
        size = math.prod(norm.normalized_shape)
        total = None
        for call in calls:
            self.check_versions(call)
            x = call.inputs[0]
            d = _per_sample_grad(
                call.output_grads[0], sample_dim, rows, f"the output of module {self.describe()}"
            ).reshape(b, k, -1, size)
            parts = []
            if train_weight:
                normalized = F.layer_norm(x, norm.normalized_shape, eps=norm.eps)
                what = f"the input of module {self.describe()}"
                normalized = _per_sample(normalized, sample_dim, rows, what).reshape(b, 1, -1, size)
                parts.append((d * normalized.to(d.dtype)).sum(2))
            if train_bias:
                parts.append(d.sum(2))
            per_row = torch.cat(parts, 2)
            total = per_row if total is None else total + per_row
        assert total is not None
        return _gramian_of_rows(total)


class GenericUnit(Unit):
    """
    Any other module: replays each call with ``torch.func`` to get the rows of its parameters'
    Jacobian (one vector-Jacobian product per sample, vectorized with ``vmap``), then takes their
    Gramian. Exact for any deterministic module; memory O(rows * parameters of the module).
    """

    keeps_outputs = True  # to check that replaying reproduces them

    def __init__(self, module: nn.Module, name: str) -> None:
        super().__init__(module, name)
        self._warned = False

    def input_dims(self, call: Call, rows: Rows, sample_dim: int) -> list[int | None]:
        """Batch dimension of each input tensor, None for tensors shared by all samples."""

        dims: list[int | None] = []
        for tensor in call.inputs:
            has_batch = tensor.dim() > sample_dim and tensor.shape[sample_dim] == rows.num_samples
            dims.append(sample_dim if has_batch else None)
        return dims

    def output_dims(self, call: Call, sample_dim: int) -> list[int]:
        return [sample_dim] * call.num_outputs

    def gramian(self, calls: list[Call], rows: Rows, sample_dim: int) -> Tensor | None:
        params = {
            name: param.detach()
            for name, param in self.module.named_parameters()
            if param.requires_grad
        }
        if not params:
            return None
        total = None
        for call in calls:
            self.check_versions(call)
            with warnings.catch_warnings():
                # torch.func warns when an operator falls back to a loop (e.g. RNNs on CPU).
                warnings.filterwarnings("ignore", message=".*performance drop.*")
                try:
                    per_row = self._per_row_gradients(call, params, rows, sample_dim)
                except (RuntimeError, ValueError) as error:
                    if isinstance(error, ValueError) and "autogram" in str(error):
                        raise
                    raise ValueError(
                        f"autogram could not replay module {self.describe()} to compute the "
                        f"Jacobian of its parameters ({type(error).__name__}: {error}). Modules "
                        "that autogram handles generically must be deterministic functions of "
                        "their inputs and parameters."
                    ) from error
            total = per_row if total is None else total + per_row
        assert total is not None
        return _gramian_of_rows(total)

    def _per_row_gradients(
        self, call: Call, params: dict[str, Tensor], rows: Rows, sample_dim: int
    ) -> Tensor:
        selected = [i for i, grad in enumerate(call.output_grads) if grad is not None]
        out_dims = self.output_dims(call, sample_dim)
        module = self.module

        def replay(p: dict[str, Tensor], inputs: list[Tensor]) -> tuple[Tensor, ...]:
            args, kwargs = call.rebuild(inputs)
            # Copies of the buffers absorb in-place updates (e.g. BatchNorm's running statistics),
            # so replaying leaves the module's state as the forward pass left it.
            state = {name: buffer.clone() for name, buffer in module.named_buffers()}
            state.update(p)
            leaves = flatten_tensors(functional_call(module, state, args, kwargs))
            return tuple(leaves[i] for i in selected)

        def flat_rows(grads: dict[str, Tensor], count: int) -> Tensor:
            # Explicit sizes: a batching rule that forgets to reduce over a vmapped dimension
            # (seen with prelu's backward) then fails loudly instead of giving wrong rows.
            return torch.cat([grads[n].reshape(count, params[n].numel()) for n in params], 1)

        def vjp_rows(vjp_fn: Any, cotangents: tuple[Tensor, ...], may_loop: bool) -> dict[str, Tensor]:
            if cotangents[0].shape[0] == 1:
                (grads,) = vjp_fn(tuple(c[0] for c in cotangents))
                return {n: g.unsqueeze(0) for n, g in grads.items()}
            try:
                (grads,) = vmap(vjp_fn)(cotangents)
                return grads
            except RuntimeError:
                if not may_loop:
                    raise  # inside the vmap over samples: that level falls back to a loop
                # No working batching rule: one vector-Jacobian product per row.
                per_row = [vjp_fn(tuple(c[j] for c in cotangents))[0] for j in range(len(cotangents[0]))]
                return {n: torch.stack([row[n] for row in per_row]) for n in per_row[0]}

        if not rows.batched:
            cotangents = tuple(call.output_grads[i] for i in selected)
            outputs, vjp_fn = vjp(lambda p: replay(p, call.inputs), params)
            grads = vjp_rows(vjp_fn, cotangents, may_loop=True)
            self._check_replay(call, selected, list(outputs), None)
            return flat_rows(grads, rows.count).unsqueeze(0)

        in_dims = self.input_dims(call, rows, sample_dim)
        cotangents = []
        for i in selected:
            what = f"output {i} of module {self.describe()}"
            cotangents.append(_per_sample_grad(call.output_grads[i], out_dims[i], rows, what))
        k = rows.rows_per_sample

        def one_sample(inputs: list[Tensor], sample_cotangents: list[Tensor], may_loop: bool = False) -> Any:
            # Replay on a batch of one sample, so modules see the input layout they expect.
            full = [x if d is None else x.unsqueeze(d) for x, d in zip(inputs, in_dims)]
            outputs, vjp_fn = vjp(lambda p: replay(p, full), params)
            expanded = tuple(c.unsqueeze(out_dims[i] + 1) for c, i in zip(sample_cotangents, selected))
            grads = vjp_rows(vjp_fn, expanded, may_loop)
            squeezed = [o.squeeze(out_dims[i]) for o, i in zip(outputs, selected)]
            return flat_rows(grads, k), squeezed

        try:
            per_row, outputs = vmap(one_sample, in_dims=(in_dims, 0))(call.inputs, cotangents)
        except RuntimeError as error:
            # Some kernels have no batching rule that works (e.g. float64 LSTM on CPU): replay
            # the samples one by one instead; same result, slower.
            if "random" in str(error):
                raise ValueError(
                    f"autogram cannot replay module {self.describe()}: it draws random numbers "
                    "(e.g. dropout inside it), so a replay would not reproduce the forward pass. "
                    "Move the randomness into its own module (e.g. `nn.Dropout`)."
                ) from error
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"autogram could not vectorize module {self.describe()} over the samples with "
                    f"`torch.vmap` ({str(error).splitlines()[0]}); replaying it one sample at a "
                    "time, which gives the same Gramian more slowly.",
                    stacklevel=2,
                )
            results = [
                one_sample(
                    [x if d is None else x.select(d, b) for x, d in zip(call.inputs, in_dims)],
                    [c[b] for c in cotangents],
                    may_loop=True,
                )
                for b in range(rows.num_samples)
            ]
            per_row = torch.stack([r[0] for r in results])
            outputs = [torch.stack([r[1][j] for r in results]) for j in range(len(selected))]
        self._check_replay(call, selected, outputs, [out_dims[i] for i in selected])
        return per_row

    def _check_replay(
        self, call: Call, selected: list[int], outputs: list[Tensor], dims: list[int] | None
    ) -> None:
        """Raises if replaying the module did not reproduce its recorded outputs."""

        for position, i in enumerate(selected):
            recorded = call.outputs[i]
            if recorded._version != call.output_versions[i]:
                continue  # modified in place later: nothing reliable to compare with
            if dims is not None:
                recorded = recorded.movedim(dims[position], 0)
            replayed = outputs[position].to(recorded.dtype)
            scale = recorded.abs().max() if recorded.numel() else recorded.new_zeros(())
            tolerance = (1e-7 if recorded.dtype == torch.float64 else 1e-3) * (scale + 1e-12)
            if replayed.shape != recorded.shape or (replayed - recorded).abs().max() > tolerance:
                raise ValueError(
                    f"autogram replayed module {self.describe()} on its recorded inputs and got "
                    "different outputs. Its Jacobian can only be computed for a deterministic "
                    "module whose samples are independent (no dropout inside it, no batch "
                    "statistics); use `batch_dim=None` for dependence between samples."
                )


class RNNUnit(GenericUnit):
    """``nn.RNN``/``nn.LSTM``/``nn.GRU``: the sequence's batch dimension follows ``batch_first``;
    hidden states have it in dimension 1."""

    module: nn.RNNBase

    def input_dims(self, call: Call, rows: Rows, sample_dim: int) -> list[int | None]:
        first = id(call.args[0]) if call.args else None
        sequence_dim = 0 if self.module.batch_first else 1
        dims: list[int | None] = []
        for tensor in call.inputs:
            dims.append(sequence_dim if id(tensor) == first else 1)
        for tensor, dim in zip(call.inputs, dims):
            if dim is not None and (tensor.dim() <= dim or tensor.shape[dim] != rows.num_samples):
                raise ValueError(
                    f"Expected the inputs of module {self.describe()} to be batched with "
                    f"{rows.num_samples} samples. Found shape {tuple(tensor.shape)}."
                )
        return dims

    def output_dims(self, call: Call, sample_dim: int) -> list[int]:
        sequence_dim = 0 if self.module.batch_first else 1
        return [sequence_dim] + [1] * (call.num_outputs - 1)


class MultiheadAttentionUnit(GenericUnit):
    """``nn.MultiheadAttention``: query, key and value have the batch dimension given by
    ``batch_first``; the other inputs and outputs follow the usual rule."""

    module: nn.MultiheadAttention

    def input_dims(self, call: Call, rows: Rows, sample_dim: int) -> list[int | None]:
        def argument(position: int, name: str) -> Any:
            if name in call.kwargs:
                return call.kwargs[name]
            return call.args[position] if len(call.args) > position else None

        sequence_dim = 0 if self.module.batch_first else 1
        known: dict[int, int | None] = {}
        for position, name in enumerate(("query", "key", "value")):
            tensor = argument(position, name)
            if isinstance(tensor, Tensor):
                known[id(tensor)] = sequence_dim
        mask = argument(3, "key_padding_mask")
        if isinstance(mask, Tensor):
            known[id(mask)] = 0
        attn_mask = argument(5, "attn_mask")
        if isinstance(attn_mask, Tensor) and attn_mask.dim() == 3:
            raise ValueError(
                f"autogram cannot split the 3-dimensional `attn_mask` of module {self.describe()} "
                "by sample; use a 2-dimensional mask or `sample_dim=None`."
            )
        return [known.get(id(tensor)) for tensor in call.inputs]

    def output_dims(self, call: Call, sample_dim: int) -> list[int]:
        return [0 if self.module.batch_first else 1] + [0] * (call.num_outputs - 1)


_BATCH_STATISTICS = (nn.modules.batchnorm._BatchNorm, nn.SyncBatchNorm)
# The module kinds whose mode can make them couple the samples of a batch.
MAY_MIX_SAMPLES = (*_BATCH_STATISTICS, nn.Embedding)


def mixes_samples(module: nn.Module) -> bool:
    """Whether the module couples the samples of a batch in its current mode."""

    if isinstance(module, _BATCH_STATISTICS):
        return module.training or not module.track_running_stats
    return isinstance(module, nn.Embedding) and module.scale_grad_by_freq


def make_unit(module: nn.Module, name: str) -> Unit:
    """Picks the most specific unit for a module that directly holds parameters."""

    kind = type(module)
    if isinstance(module, nn.Linear) and kind.forward is nn.Linear.forward:
        return LinearUnit(module, name)
    if (
        isinstance(module, (nn.Conv1d, nn.Conv2d))
        and kind.forward in (nn.Conv1d.forward, nn.Conv2d.forward)
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    ):
        return ConvUnit(module, name)
    if (
        isinstance(module, nn.Embedding)
        and kind.forward is nn.Embedding.forward
        and not module.scale_grad_by_freq
    ):
        return EmbeddingUnit(module, name)
    if isinstance(module, nn.LayerNorm) and kind.forward is nn.LayerNorm.forward:
        return LayerNormUnit(module, name)
    if isinstance(module, nn.RNNBase):
        return RNNUnit(module, name)
    if isinstance(module, nn.MultiheadAttention):
        return MultiheadAttentionUnit(module, name)
    return GenericUnit(module, name)
