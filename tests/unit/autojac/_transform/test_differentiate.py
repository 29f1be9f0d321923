import warnings

import pytest
import torch
from torch import nn

from torchjd.autojac._transform import VmapFallbackWarning
from torchjd.autojac._transform._differentiate import batched_vjp


class _NotVmappable(torch.autograd.Function):
    """Doubles its input; its backward has data-dependent control flow, which vmap cannot run."""

    @staticmethod
    def forward(x):
        return x * 2

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        if grad.sum() > float("inf"):
            raise AssertionError
        return grad * 2


def _loop(outputs, inputs, rows):
    per_row = [
        torch.autograd.grad(outputs, inputs, [r[i] for r in rows], retain_graph=True)
        for i in range(rows[0].shape[0])
    ]
    return [torch.stack(column) for column in zip(*per_row)]


def test_compiled_graph_falls_back_to_rows_with_warning():
    torch.manual_seed(0)
    linear = nn.Linear(3, 2)
    compiled = torch.compile(linear, backend="aot_eager")
    x = torch.randn(4, 3)
    rows = [torch.randn(3, 2)]
    # The compiled node is deep in the graph: a failed vectorized pass would already have freed
    # the nodes above it, so the incompatibility must be detected before differentiating.
    y = compiled(x).tanh().sum(dim=0)
    expected = _loop([y], [linear.weight, linear.bias], rows)
    with pytest.warns(VmapFallbackWarning, match="torch.compile"):
        result = batched_vjp([y], [linear.weight, linear.bias], rows, None, False, False)
    for value, reference in zip(result, expected):
        torch.testing.assert_close(value, reference)


def test_chunk_size_one_does_not_warn_on_compiled_graph():
    linear = nn.Linear(3, 2)
    compiled = torch.compile(linear, backend="aot_eager")
    y = compiled(torch.randn(4, 3)).sum(dim=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batched_vjp([y], [linear.weight], [torch.eye(2)], 1, False, False)


def test_unknown_vmap_failure_falls_back_to_rows():
    x = torch.randn(3, requires_grad=True)
    y = _NotVmappable.apply(x)
    with pytest.warns(VmapFallbackWarning, match="parallel_chunk_size=1"):
        (result,) = batched_vjp([y], [x], [torch.eye(3)], None, False, False)
    torch.testing.assert_close(result, 2 * torch.eye(3))


def test_warning_points_at_the_caller():
    linear = nn.Linear(3, 2)
    compiled = torch.compile(linear, backend="aot_eager")
    y = compiled(torch.randn(4, 3)).sum(dim=0)
    with pytest.warns(VmapFallbackWarning) as record:
        batched_vjp([y], [linear.weight], [torch.eye(2)], None, False, False)
    assert record[0].filename == __file__


def test_unknown_vmap_failure_after_freeing_the_graph_says_what_to_do():
    x = torch.randn(3, requires_grad=True)
    # tanh runs (and frees its saved output) before the failing node is reached.
    y = _NotVmappable.apply(x).tanh()
    with pytest.warns(VmapFallbackWarning), pytest.raises(RuntimeError, match="parallel_chunk_size=1"):
        batched_vjp([y], [x], [torch.eye(3)], None, False, False)
    y = _NotVmappable.apply(x).tanh()
    with pytest.warns(VmapFallbackWarning):
        (result,) = batched_vjp([y], [x], [torch.eye(3)], None, True, False)
    expected = torch.diag(2 * (1 - y.detach() ** 2))
    torch.testing.assert_close(result, expected)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, None])
@pytest.mark.parametrize("create_graph", [False, True])
def test_chunks_are_assembled_into_the_loop_jacobian(chunk_size, create_graph):
    torch.manual_seed(0)
    w = torch.randn(3, 2, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    unused = torch.randn(2, requires_grad=True)
    y = torch.tanh(w @ torch.randn(2) + b)
    rows = [torch.randn(5, 3)]
    expected = _loop([y], [w, b], rows)
    result = batched_vjp([y], [w, b, unused], rows, chunk_size, True, create_graph)
    for value, reference in zip(result, expected):
        torch.testing.assert_close(value, reference)
    torch.testing.assert_close(result[2], torch.zeros(5, 2))
    assert result[0].requires_grad == create_graph
