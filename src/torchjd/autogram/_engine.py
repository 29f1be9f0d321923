import warnings
from collections import deque
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.graph import GradientEdge
from torch.utils.hooks import RemovableHandle

from ._tree import flatten_tensors
from ._units import MAY_MIX_SAMPLES as _MAY_MIX_SAMPLES
from ._units import Call, Rows, Unit, make_unit, mixes_samples, record_call

_METADATA_KEY = "torchjd.autogram"
# Whatever the batch dimension of the output, the engine's modules are batched on their first
# dimension (as in torchjd 0.18); recurrent and attention units follow their own layout.
_MODULE_BATCH_DIM = 0


class Engine:
    """
    Computes the Gramian ``J @ J.T`` of the Jacobian of a tensor of objectives with respect to the
    parameters of some modules, layer by layer, without ever forming ``J``.

    The engine registers a forward hook on every parameterized module it covers. During the forward
    pass, each hook remembers the module's inputs on the autograd graph of its outputs (the record
    lives exactly as long as that graph). :meth:`compute_gramian` then backpropagates from the
    objectives to the modules' outputs only, and combines, module by module, these output gradients
    with the recorded inputs into the module's share of the Gramian.

    - ``Linear``, ``Conv1d``/``Conv2d`` (zero padding), ``Embedding`` and ``LayerNorm`` use their
      structure: for a linear layer, a sample's weight gradient is an outer product, so its share of
      the Gramian is the elementwise product of the Gramian of the inputs and that of the output
      gradients (summed over positions when there are sequence or spatial dimensions).
    - Any other module that holds parameters (including those of its submodules, e.g.
      ``MultiheadAttention``, ``LSTM``, custom modules) is replayed with :mod:`torch.func` on its
      recorded inputs to get the rows of its parameters' Jacobian, one vector-Jacobian product per
      sample, vectorized with ``vmap``. This is exact for any module that is a deterministic function
      of its inputs and parameters; the engine checks that the replay reproduces the recorded
      outputs and raises otherwise (e.g. dropout inside such a module).

    With ``batch_dim`` set, the engine relies on objective ``i`` of the output depending only on
    sample ``i`` of the batch (the usual case of per-sample losses): one backward pass per objective
    of a sample gives the output gradients of all samples at once, so computing the Gramian of
    ``B`` per-sample losses costs about one backward pass. ``batch_dim`` is the batch dimension of
    the *output* given to :meth:`compute_gramian` (e.g. ``1`` for losses ``[tasks, B]``); the inputs
    and outputs of the engine's modules are batched on their first dimension (recurrent layers and
    ``MultiheadAttention`` follow their own ``batch_first``, hidden states their dimension 1), so
    sequence models take ``batch_first=True``. Modules that couple samples (BatchNorm in training
    mode, ``Embedding(scale_grad_by_freq=True)``) are refused. With ``batch_dim=None``, any
    dependence between samples, and any layout, is allowed: the engine backpropagates all ``m``
    rows of the identity (vectorized), and each module's share is computed from its own rows, so
    the full ``J`` over all parameters is never held; this costs about ``m`` backward passes.

    The hooks only record while gradients are enabled and cost a few microseconds per module call;
    :meth:`remove_hooks` removes them.

    :param modules: The modules whose parameters (those with ``requires_grad=True`` when the
        Gramian is computed, including those of submodules) define the Jacobian.
    :param batch_dim: The batch dimension of the output given to :meth:`compute_gramian` (negative
        values count from the end, as in :meth:`torch.Tensor.movedim`), or ``None`` if the
        objectives may depend on several samples or the modules are not batched on their first
        dimension. ``0`` (default) is the usual ``[B]`` or ``[B, tasks]`` losses; torchjd 0.18
        requires it, so code written for 0.18 always passes it.

    Example: one step of instance-wise risk minimization, weighting per-sample losses by a function
    of their Gramian.

    >>> import torch
    >>> from torch import nn
    >>> from torchjd.aggregation import UPGradWeighting
    >>> from torchjd.autogram import Engine
    >>>
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    >>> engine = Engine(model, batch_dim=0)
    >>> inputs, targets = torch.randn(8, 3), torch.randn(8)
    >>> losses = (model(inputs).squeeze(1) - targets) ** 2  # one loss per sample, shape [8]
    >>> gramian = engine.compute_gramian(losses)  # [8, 8], J @ J.T
    >>> gramian.shape
    torch.Size([8, 8])
    >>> weights = UPGradWeighting()(gramian)  # [8]
    >>> losses.backward(weights)  # the graph is still there: a weighted backward pass
    >>> model[0].weight.grad.shape
    torch.Size([4, 3])
    """

    def __init__(self, *modules: nn.Module, batch_dim: int | None = 0) -> None:
        if len(modules) == 0:
            raise ValueError("Parameter `modules` should contain at least one module. Found none.")
        for module in modules:
            if not isinstance(module, nn.Module):
                raise TypeError(
                    "Parameter `modules` should contain only `torch.nn.Module`s. Found "
                    f"`{type(module).__name__}`."
                )
        if batch_dim is not None and (not isinstance(batch_dim, int) or isinstance(batch_dim, bool)):
            raise TypeError(
                f"Parameter `batch_dim` should be an int or None. Found `{type(batch_dim).__name__}`."
            )

        self.batch_dim = batch_dim
        self._units: list[Unit] = []
        self._may_mix: list[nn.Module] = []
        seen_modules: set[int] = set()
        for index, module in enumerate(modules):
            prefix = type(module).__name__ if len(modules) == 1 else f"modules[{index}]"
            self._collect_units(module, prefix, seen_modules)
        if not self._units:
            raise ValueError("Parameter `modules` should contain modules that hold parameters. Found none.")

        owners: dict[int, Unit] = {}
        for unit in self._units:
            for param in unit.parameters():
                if id(param) in owners:
                    raise ValueError(
                        f"A parameter is shared by modules {owners[id(param)].describe()} and "
                        f"{unit.describe()}; autogram does not support parameters used by several "
                        "modules (e.g. tied weights)."
                    )
                owners[id(param)] = unit

        self._check_no_mixing()
        self._key = f"{_METADATA_KEY}.{id(self)}"
        self._recording = True
        self._backpropagating = False
        self._handles: list[RemovableHandle] = [
            unit.module.register_forward_hook(self._make_hook(unit), with_kwargs=True)
            for unit in self._units
        ]

    def _collect_units(self, module: nn.Module, name: str, seen: set[int]) -> None:
        if id(module) in seen:
            return  # given twice, or inside a module given before
        seen.add(id(module))
        if isinstance(module, _MAY_MIX_SAMPLES):
            self._may_mix.append(module)
        if any(True for _ in module.parameters(recurse=False)):
            # A module that holds parameters is one unit with all its submodules' parameters, since
            # its forward may use them without calling the submodules (e.g. MultiheadAttention).
            self._units.append(make_unit(module, name))
            for sub in module.modules():
                if id(sub) not in seen and isinstance(sub, _MAY_MIX_SAMPLES):
                    self._may_mix.append(sub)
                seen.add(id(sub))
            return
        for child_name, child in module.named_children():
            self._collect_units(child, f"{name}.{child_name}", seen)

    def _check_no_mixing(self) -> None:
        if self.batch_dim is None:
            return
        for module in self._may_mix:
            if mixes_samples(module):
                raise ValueError(
                    f"Module {type(module).__name__} couples the samples of a batch (batch "
                    "statistics or frequency-scaled gradients), so per-sample objectives do not "
                    "depend on their own sample only. Put it in eval mode, or create the `Engine` "
                    "with `batch_dim=None`."
                )

    def _make_hook(self, unit: Unit) -> Any:
        key = self._key

        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            if not self._recording or not torch.is_grad_enabled():
                return
            tensors = [output] if isinstance(output, Tensor) else flatten_tensors(output)
            call = None
            for index, tensor in enumerate(tensors):
                node = tensor.grad_fn
                if node is None:
                    continue
                if call is None:
                    call = record_call(args, kwargs, output, unit.keeps_outputs)
                # The record lives in the metadata of the node that produced the output, so it
                # dies with the graph; compute_gramian finds it by walking the graph.
                metadata = node.metadata
                entries = metadata.get(key)
                if entries is None:
                    entries = metadata[key] = []
                    node.register_hook(self._make_release_hook(entries))
                entries.append((unit, call, index, tensor.output_nr))

        return hook

    def _make_release_hook(self, entries: list[tuple[Unit, Call, int, int]]) -> Any:
        # A backward pass that frees the graph (no retain_graph) makes the records useless: drop
        # the recorded inputs right away, as autograd drops its saved tensors, instead of keeping
        # them until the graph itself is garbage collected (e.g. during the next forward pass).
        def release(grad_inputs: Any, grad_outputs: Any) -> None:
            if not self._backpropagating and not _graph_is_kept():
                for _, call, _, _ in entries:
                    call.release()

        return release

    def remove_hooks(self) -> None:
        """Removes the engine's forward hooks; afterwards the engine can no longer compute Gramians."""

        for handle in self._handles:
            handle.remove()
        self._handles = []

    def compute_gramian(self, output: Tensor) -> Tensor:
        """
        Returns the Gramian ``[m, m]`` of the Jacobian of ``output.flatten()`` (``m`` elements) with
        respect to the engine's parameters.

        Nothing is written to any ``.grad``. The graph of ``output`` is retained (as with
        ``retain_graph=True``), so that ``output.backward(weights)`` can follow; that backward
        pass frees it as usual (and, with it, what the engine recorded), and so does dropping
        ``output``. Call it before any backward pass that frees the graph.

        :param output: The objectives, computed with the engine's modules since the engine was
            created. With ``batch_dim`` set, its ``batch_dim`` dimension is the batch (a scalar is
            also accepted and treated as depending on every sample).

        >>> import torch
        >>> from torch import nn
        >>> from torchjd.autogram import Engine
        >>>
        >>> model = nn.Linear(3, 2)
        >>> engine = Engine(model, batch_dim=1)  # the batch is dimension 1 of the losses below
        >>> losses = (model(torch.randn(5, 3)) ** 2).T  # [2 tasks, 5 samples]
        >>> engine.compute_gramian(losses).shape  # in the order of losses.flatten()
        torch.Size([10, 10])
        """

        if not isinstance(output, Tensor):
            raise TypeError(f"Parameter `output` should be a Tensor. Found `{type(output).__name__}`.")
        if not self._handles:
            raise RuntimeError("This engine's hooks were removed; create a new `Engine`.")
        m = output.numel()
        if m == 0:
            raise ValueError("Parameter `output` should have at least one element. Found none.")
        if output.grad_fn is None:
            raise ValueError(
                "Parameter `output` should be computed from the engine's modules with gradients "
                "enabled. Found a tensor without `grad_fn`."
            )
        batch_dim = self.batch_dim
        if batch_dim is not None and output.dim() > 0:
            if not -output.dim() <= batch_dim < output.dim():
                raise ValueError(
                    f"Parameter `output` should have a dimension {batch_dim} (`batch_dim`). Found "
                    f"shape {tuple(output.shape)}."
                )
            batch_dim %= output.dim()
        self._check_no_mixing()

        batched = batch_dim is not None and output.dim() > 0
        if batched:
            assert batch_dim is not None
            num_samples = output.shape[batch_dim]
            rows = Rows(batched=True, num_samples=num_samples, rows_per_sample=m // num_samples)
        else:
            rows = Rows(batched=False, num_samples=1, rows_per_sample=m)

        # Units whose parameters are all frozen now contribute nothing: not asking for their output
        # gradients also spares the backward pass below the last trainable layer.
        trainable = {id(u) for u in self._units if any(p.requires_grad for p in u.parameters())}
        found = [entry for entry in self._find_calls(output) if id(entry[1]) in trainable]
        gramian = torch.zeros(m, m, dtype=output.dtype, device=output.device)
        if not found:
            return gramian

        if any(call.released for _, _, call, _, _ in found):
            raise RuntimeError(
                "The graph of `output` was already freed by a backward pass. Call "
                "`compute_gramian` before `backward`, or pass `retain_graph=True` to the earlier "
                "backward pass."
            )
        edges = [GradientEdge(node, output_nr) for node, _, _, _, output_nr in found]
        self._backpropagating = True
        try:
            grads = _backpropagate(output, edges, _grad_rows(output, rows, batch_dim))
        finally:
            self._backpropagating = False

        calls_by_unit: dict[int, tuple[Unit, list[Call]]] = {}
        for (_, unit, call, index, _), grad in zip(found, grads):
            if not call.output_grads:
                call.output_grads = [None] * call.num_outputs
            call.output_grads[index] = grad
            unit_calls = calls_by_unit.setdefault(id(unit), (unit, []))[1]
            if all(c is not call for c in unit_calls):
                unit_calls.append(call)

        self._recording = False
        try:
            # Inputs and output gradients are detached, so no graph is built here; gradients are
            # enabled because some modules replayed by torch.func pick other kernels without them.
            with torch.enable_grad():
                for unit, calls in calls_by_unit.values():
                    calls = [c for c in calls if any(g is not None for g in c.output_grads)]
                    if not calls:
                        continue
                    contribution = unit.gramian(calls, rows, _MODULE_BATCH_DIM)
                    if contribution is not None:
                        gramian += contribution.to(gramian.dtype)
        finally:
            self._recording = True
            for _, calls in calls_by_unit.values():
                for call in calls:
                    call.output_grads = []

        if batched and batch_dim != 0:
            # Rows were computed sample-major; put them back in the order of output.flatten().
            order = torch.arange(m, device=output.device).view(output.shape).movedim(batch_dim, 0)
            inverse = torch.argsort(order.flatten())
            gramian = gramian[inverse][:, inverse]
        return gramian

    def _find_calls(self, output: Tensor) -> list[tuple[Any, Unit, Call, int, int]]:
        """The recorded calls on the graph of ``output``: (node, unit, call, output index, nr)."""

        found = []
        root = output.grad_fn
        seen = {root}
        queue = deque([root])
        key = self._key
        while queue:
            node = queue.popleft()
            entries = node.metadata.get(key)
            if entries:
                for unit, call, index, output_nr in entries:
                    found.append((node, unit, call, index, output_nr))
            for next_node, _ in node.next_functions:
                if next_node is not None and next_node not in seen:
                    seen.add(next_node)
                    queue.append(next_node)
        return found


def _graph_is_kept() -> bool:
    """Whether the backward pass running now retains the graph (True where torch cannot say)."""

    keep_graph = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    return True if keep_graph is None else bool(keep_graph())


def _grad_rows(output: Tensor, rows: Rows, batch_dim: int | None) -> Tensor:
    """The rows ``[r, *output.shape]`` to backpropagate (see ``Rows``)."""

    k = rows.rows_per_sample
    if not rows.batched:
        return torch.eye(k, dtype=output.dtype, device=output.device).view(k, *output.shape)
    assert batch_dim is not None
    if k == 1:
        return torch.ones_like(output).unsqueeze(0)
    # Row j is 1 at objective j of every sample: samples do not interact, so one row serves all.
    moved_shape = output.movedim(batch_dim, 0).shape
    eye = torch.eye(k, dtype=output.dtype, device=output.device)
    rows_tensor = eye.unsqueeze(1).expand(k, rows.num_samples, k).reshape(k, *moved_shape)
    return rows_tensor.movedim(1, batch_dim + 1)


_warned_fallback = False


def _backpropagate(output: Tensor, edges: list[GradientEdge], grad_rows: Tensor) -> list[Tensor | None]:
    """Gradients ``[r, *shape]`` of each row of ``grad_rows`` with respect to each edge."""

    if grad_rows.shape[0] == 1:
        grads = torch.autograd.grad(output, edges, grad_rows[0], retain_graph=True, allow_unused=True)
        return [None if g is None else g.unsqueeze(0) for g in grads]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*performance drop.*")
            grads = torch.autograd.grad(
                output, edges, grad_rows, retain_graph=True, allow_unused=True, is_grads_batched=True
            )
        return list(grads)
    except (RuntimeError, NotImplementedError) as error:
        global _warned_fallback
        if not _warned_fallback:
            _warned_fallback = True
            warnings.warn(
                "autogram could not vectorize the backward pass over the rows with `torch.vmap` "
                f"({error}); falling back to one backward pass per row.",
                stacklevel=3,
            )
    per_row = [
        torch.autograd.grad(output, edges, row, retain_graph=True, allow_unused=True)
        for row in grad_rows
    ]
    result: list[Tensor | None] = []
    for position in range(len(edges)):
        if per_row[0][position] is None:
            result.append(None)
        else:
            result.append(torch.stack([row_grads[position] for row_grads in per_row]))
    return result
