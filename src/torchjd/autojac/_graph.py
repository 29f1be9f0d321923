import sys
from collections import deque
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import Tensor
from torch.autograd.graph import Node

# Backward nodes that torch.vmap cannot run, with the cause to report when one is found.
_VMAP_INCOMPATIBLE_NODES = {
    "CompiledFunctionBackward": "the graph contains the output of a torch.compile'd function",
    "CudnnRnnBackward0": "the graph contains an RNN run by cuDNN",
    "MiopenRnnBackward0": "the graph contains an RNN run by MIOpen",
}


def _walk(roots: Iterable[Node | None], excluded: Iterable[Node | None] = ()) -> Iterator[Node]:
    """Yields each node reachable from ``roots`` once, breadth-first, without entering ``excluded``."""

    seen = {node for node in excluded if node is not None}
    queue = deque(node for node in roots if node is not None)
    while queue:
        node = queue.popleft()
        if node in seen:
            continue
        seen.add(node)
        yield node
        queue.extend(child for child, _ in node.next_functions if child is not None)


def get_leaves(roots: Sequence[Tensor], excluded: Sequence[Tensor] = ()) -> list[Tensor]:
    """
    Returns the leaf tensors that require grad and that ``roots`` were computed from, in
    breadth-first order from the roots, without going through ``excluded``. A root that is itself
    such a leaf is included.
    """

    leaves: dict[Tensor, None] = {}  # An ordered set, compared by identity.
    excluded_set = set(excluded)
    for root in roots:
        if root.grad_fn is None and root.requires_grad and root not in excluded_set:
            leaves[root] = None
    for node in _walk([r.grad_fn for r in roots], [e.grad_fn for e in excluded]):
        variable = getattr(node, "variable", None)  # Only AccumulateGrad nodes have one.
        if isinstance(variable, Tensor) and variable not in excluded_set:
            leaves[variable] = None
    return list(leaves)


def graphs_overlap(roots: Sequence[Tensor], excluded: Sequence[Tensor]) -> bool:
    """
    Whether two of the ``roots`` share a node of their graphs (a leaf included), without going
    through ``excluded``: e.g. whether the heads of several tasks share anything above the features.
    """

    owners: dict[Node, int] = {}
    excluded_nodes = [e.grad_fn for e in excluded]
    for index, root in enumerate(roots):
        for node in _walk([root.grad_fn], excluded_nodes):
            if owners.setdefault(node, index) != index:
                return True
    return False


def find_vmap_incompatibility(roots: Sequence[Tensor], inputs: Sequence[Tensor] = ()) -> str | None:
    """
    Returns why ``torch.vmap`` cannot backpropagate from ``roots`` to ``inputs``, if known.

    A tensor that retains grad would get an escaped batched tensor in its ``.grad``; among the
    roots and the inputs it is seen here, but PyTorch exposes no way to find one inside the graph.
    """

    for tensor in (*roots, *inputs):
        if tensor.retains_grad:
            return (
                f"a tensor of shape {list(tensor.shape)} retains grad (`retain_grad()`), and "
                "torch.vmap would leave an unusable batched tensor in its `.grad`"
            )
    if not _incompatible_nodes_can_exist():
        return None
    # Runs before every vectorized Jacobian, so it is a plain depth-first loop rather than _walk:
    # on small models the generator's overhead is a measurable part of the whole call.
    stack = [root.grad_fn for root in roots if root.grad_fn is not None]
    seen = set(stack)
    while stack:
        node = stack.pop()
        cause = _VMAP_INCOMPATIBLE_NODES.get(type(node).__name__)
        if cause is not None:
            return cause
        for child, _ in node.next_functions:
            if child is not None and child not in seen:
                seen.add(child)
                stack.append(child)
    return None


def _incompatible_nodes_can_exist() -> bool:
    """
    Whether a graph can hold one of the nodes of ``_VMAP_INCOMPATIBLE_NODES`` at all: compiled
    functions' nodes only once torch.compile's AOTAutograd is loaded, cuDNN and MIOpen RNN nodes
    only once CUDA (or ROCm) is initialized. Skipping the walk otherwise matters on small models,
    where creating the Python objects of the graph's nodes is a measurable part of a Jacobian.
    """

    return "torch._functorch.aot_autograd" in sys.modules or torch.cuda.is_initialized()
