"""
End-to-end tests of :func:`torchjd.autojac.jac` and :func:`torchjd.autojac.backward` on small real
models (MLP, CNN, LSTM, a module used twice).

Every Jacobian is compared to an independent reference: a plain loop of ``torch.autograd.grad``, one
call per row of the Jacobian (one per output scalar, or one per row of ``jac_outputs``). The
reference is always computed first, with ``retain_graph=True``, so that torchjd then runs on the same
graph with its own ``retain_graph`` setting.
"""

from collections.abc import Sequence

import pytest
import torch
from torch import Tensor, nn
from torch.testing import assert_close

from torchjd.autojac import VmapFallbackWarning, backward, jac

# The models here are all vmap-compatible on CPU, so a fallback to the row-by-row path would mean
# that the vectorized path (the one the comparisons are meant to check) silently did not run.
pytestmark = pytest.mark.filterwarnings("error::torchjd.autojac.VmapFallbackWarning")

# None: all rows in one vectorized pass; 1: row by row without vmap; 3: several chunks, the last one
# partial for most models here.
chunk_sizes = pytest.mark.parametrize("parallel_chunk_size", [None, 1, 3])


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def autograd_jacobians(
    outputs: Sequence[Tensor] | Tensor,
    inputs: Sequence[Tensor],
    jac_outputs: Sequence[Tensor] | Tensor | None = None,
) -> tuple[Tensor, ...]:
    """
    The reference: the Jacobians ``[m] + input.shape`` of ``outputs`` w.r.t. ``inputs``, left-
    multiplied by ``jac_outputs`` (identity if ``None``), with one ``torch.autograd.grad`` call per
    row and zeros where an input is not reached. The graph is retained.
    """

    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    if jac_outputs is None:
        sizes = [output.numel() for output in outputs]
        identity = torch.eye(sum(sizes), dtype=outputs[0].dtype)
        jac_outputs = [
            block.reshape((-1,) + tuple(output.shape))
            for block, output in zip(identity.split(sizes, dim=1), outputs)
        ]
    elif isinstance(jac_outputs, Tensor):
        jac_outputs = [jac_outputs]

    rows = []
    for k in range(jac_outputs[0].shape[0]):
        grads = torch.autograd.grad(
            outputs,
            inputs,
            grad_outputs=[j[k] for j in jac_outputs],
            retain_graph=True,
            allow_unused=True,
        )
        rows.append([torch.zeros_like(i) if g is None else g for g, i in zip(grads, inputs)])
    return tuple(torch.stack([row[i] for row in rows]) for i in range(len(inputs)))


def assert_all_close(actual: Sequence[Tensor], expected: Sequence[Tensor]) -> None:
    # assert_close's default tolerances follow the dtype (float32: rtol 1.3e-6, atol 1e-5; float64:
    # rtol 1e-7, atol 1e-7), which is what a batched vs. looped backward pass can differ by.
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert_close(a, e)


def make_mlp(dtype: torch.dtype = torch.float32) -> nn.Sequential:
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)  # 75 params


def make_cnn() -> nn.Sequential:
    return nn.Sequential(  # [2, 2, 6, 6] -> [2, 3]; 92 params
        nn.Conv2d(2, 3, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 2, kernel_size=2),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(2, 3),
    )


class LSTMRegressor(nn.Module):
    """An LSTM over a sequence followed by a linear layer on its last hidden state."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size=3, hidden_size=4, batch_first=True)  # 144 params
        self.head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        sequence, (_, c_n) = self.lstm(x)
        return self.head(sequence[:, -1]), c_n


class TwiceApplied(nn.Module):
    """Applies the same linear layer twice, so that its parameters get two contributions."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.tanh(self.linear(torch.tanh(self.linear(x)))))


@chunk_sizes
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_jac_of_mlp_matches_autograd_loop(parallel_chunk_size: int | None, dtype: torch.dtype):
    model = make_mlp(dtype)
    params = list(model.parameters())
    output = model(torch.randn(4, 5, dtype=dtype))  # [4, 3]: 12 rows

    expected = autograd_jacobians(output, params)
    jacobians = jac(output, params, parallel_chunk_size=parallel_chunk_size)

    assert [j.shape for j in jacobians] == [(12,) + p.shape for p in params]
    assert all(j.dtype == dtype for j in jacobians)
    assert_all_close(jacobians, expected)


@chunk_sizes
def test_jac_of_cnn_matches_autograd_loop(parallel_chunk_size: int | None):
    model = make_cnn()
    params = list(model.parameters())
    output = model(torch.randn(2, 2, 6, 6))  # [2, 3]: 6 rows

    expected = autograd_jacobians(output, params)
    jacobians = jac(output, params, parallel_chunk_size=parallel_chunk_size)

    assert_all_close(jacobians, expected)


@chunk_sizes
def test_jac_of_lstm_with_several_outputs_matches_autograd_loop(parallel_chunk_size: int | None):
    model = LSTMRegressor()
    params = list(model.parameters())
    prediction, c_n = model(torch.randn(2, 4, 3))  # [2, 2] and [1, 2, 4]: 4 + 8 rows

    expected = autograd_jacobians([prediction, c_n], params)
    jacobians = jac([prediction, c_n], params, parallel_chunk_size=parallel_chunk_size)

    assert [j.shape[0] for j in jacobians] == [12] * len(params)
    assert_all_close(jacobians, expected)


@chunk_sizes
def test_jac_of_module_used_twice_sums_both_uses(parallel_chunk_size: int | None):
    model = TwiceApplied()
    params = list(model.parameters())
    output = model(torch.randn(3, 4))  # [3, 2]: 6 rows

    expected = autograd_jacobians(output, params)
    jacobians = jac(output, params, parallel_chunk_size=parallel_chunk_size)

    assert_all_close(jacobians, expected)


@chunk_sizes
def test_jac_with_respect_to_input_and_intermediate_activation(parallel_chunk_size: int | None):
    model = make_mlp()
    x = torch.randn(4, 5, requires_grad=True)
    hidden = model[1](model[0](x))
    output = model[2](hidden)
    inputs = [x, hidden, model[0].weight]

    expected = autograd_jacobians(output, inputs)
    jacobians = jac(output, inputs, parallel_chunk_size=parallel_chunk_size)

    assert_all_close(jacobians, expected)


@chunk_sizes
def test_jac_with_jac_outputs_matches_autograd_loop(parallel_chunk_size: int | None):
    model = make_mlp()
    params = list(model.parameters())
    output = model(torch.randn(4, 5))  # [4, 3]
    jac_output = torch.randn(5, 4, 3)  # 5 rows, none of them one-hot

    expected = autograd_jacobians(output, params, jac_output)
    jacobians = jac(output, params, jac_outputs=jac_output, parallel_chunk_size=parallel_chunk_size)

    assert [j.shape for j in jacobians] == [(5,) + p.shape for p in params]
    assert_all_close(jacobians, expected)


@chunk_sizes
def test_jac_with_jac_outputs_for_several_outputs_matches_autograd_loop(
    parallel_chunk_size: int | None,
):
    model = LSTMRegressor()
    params = list(model.parameters())
    prediction, c_n = model(torch.randn(2, 4, 3))
    jac_outputs = [torch.randn(4, 2, 2), torch.randn(4, 1, 2, 4)]

    expected = autograd_jacobians([prediction, c_n], params, jac_outputs)
    jacobians = jac(
        [prediction, c_n], params, jac_outputs=jac_outputs, parallel_chunk_size=parallel_chunk_size
    )

    assert_all_close(jacobians, expected)


@chunk_sizes
def test_backward_with_jac_tensors_accumulates_autograd_loop_into_jac(
    parallel_chunk_size: int | None,
):
    model = make_cnn()
    params = list(model.parameters())
    output = model(torch.randn(2, 2, 6, 6))  # [2, 3]
    jac_tensor = torch.randn(4, 2, 3)

    expected = autograd_jacobians(output, params, jac_tensor)
    backward(output, jac_tensors=jac_tensor, parallel_chunk_size=parallel_chunk_size)

    assert_all_close([p.jac for p in params], expected)
    assert all(p.grad is None for p in params)


@chunk_sizes
def test_backward_of_lstm_matches_autograd_loop(parallel_chunk_size: int | None):
    model = LSTMRegressor()
    params = list(model.parameters())
    prediction, c_n = model(torch.randn(2, 4, 3))

    expected = autograd_jacobians([prediction, c_n], params)
    backward([prediction, c_n], inputs=params, parallel_chunk_size=parallel_chunk_size)

    assert_all_close([p.jac for p in params], expected)


@chunk_sizes
def test_chain_rule_in_two_steps_equals_direct_jacobian(parallel_chunk_size: int | None):
    # The seed's third example on a real model: d(output)/d(first layer) computed as
    # d(output)/d(hidden) backpropagated through d(hidden)/d(first layer).
    model = make_mlp()
    first_layer_params = list(model[0].parameters())
    hidden = model[1](model[0](torch.randn(4, 5)))  # [4, 8]
    output = model[2](hidden)  # [4, 3]

    expected = autograd_jacobians(output, first_layer_params)
    direct = jac(output, first_layer_params, retain_graph=True)
    jac_hidden = jac(output, [hidden], parallel_chunk_size=parallel_chunk_size)[0]  # [12, 4, 8]
    two_steps = jac(
        hidden, first_layer_params, jac_outputs=jac_hidden, parallel_chunk_size=parallel_chunk_size
    )

    assert jac_hidden.shape == (12, 4, 8)
    assert_all_close(two_steps, direct)
    assert_all_close(two_steps, expected)


@chunk_sizes
def test_jac_with_retain_graph_gives_same_result_twice(parallel_chunk_size: int | None):
    model = make_cnn()
    params = list(model.parameters())
    output = model(torch.randn(2, 2, 6, 6))

    expected = autograd_jacobians(output, params)
    first = jac(output, params, retain_graph=True, parallel_chunk_size=parallel_chunk_size)
    second = jac(output, params, parallel_chunk_size=parallel_chunk_size)

    assert_all_close(first, expected)
    assert_all_close(second, expected)


@chunk_sizes
def test_jac_without_retain_graph_frees_the_graph(parallel_chunk_size: int | None):
    model = make_mlp()
    output = model(torch.randn(4, 5))
    jac(output, list(model.parameters()), parallel_chunk_size=parallel_chunk_size)

    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        torch.autograd.grad(output.sum(), list(model.parameters()))


@chunk_sizes
def test_backward_twice_with_retain_graph_accumulates_twice_the_jacobian(
    parallel_chunk_size: int | None,
):
    model = TwiceApplied()
    params = list(model.parameters())
    output = model(torch.randn(3, 4))

    expected = autograd_jacobians(output, params)
    backward(output, retain_graph=True, parallel_chunk_size=parallel_chunk_size)
    backward(output, parallel_chunk_size=parallel_chunk_size)

    assert_all_close([p.jac for p in params], [2 * e for e in expected])


@chunk_sizes
def test_jac_of_unreached_inputs_is_zero(parallel_chunk_size: int | None):
    model = make_mlp()
    unused_layer = nn.Linear(5, 2)
    unused_leaf = torch.randn(3, requires_grad=True)
    x = torch.randn(4, 5)
    other_branch = unused_layer(x)  # In a graph, but not in the output's graph.
    output = model(x)
    inputs = [model[2].weight, unused_layer.weight, unused_leaf, other_branch]

    expected = autograd_jacobians(output, inputs)
    jacobians = jac(output, inputs, parallel_chunk_size=parallel_chunk_size)

    assert [j.shape for j in jacobians[1:]] == [(12,) + i.shape for i in inputs[1:]]
    for jacobian in jacobians[1:]:
        assert_close(jacobian, torch.zeros_like(jacobian))
    assert_all_close(jacobians, expected)


@chunk_sizes
def test_backward_into_unreached_leaf_accumulates_zeros(parallel_chunk_size: int | None):
    model = make_mlp()
    unused = torch.randn(2, 2, requires_grad=True)
    output = model(torch.randn(4, 5))

    backward(output, inputs=[model[0].bias, unused], parallel_chunk_size=parallel_chunk_size)

    assert_close(unused.jac, torch.zeros(12, 2, 2))


@chunk_sizes
def test_jac_default_inputs_are_the_leaves(parallel_chunk_size: int | None):
    model = make_mlp()
    x = torch.randn(4, 5, requires_grad=True)  # A leaf that requires grad, like the parameters.
    output = model(x)
    leaves = [x] + list(model.parameters())  # Every leaf has a distinct shape.

    expected = {leaf.shape: e for leaf, e in zip(leaves, autograd_jacobians(output, leaves))}
    jacobians = jac(output, parallel_chunk_size=parallel_chunk_size)

    # The order is the one of a breadth-first walk from the output: compare leaf by leaf.
    assert sorted(j.shape[1:] for j in jacobians) == sorted(expected)
    for jacobian in jacobians:
        assert_close(jacobian, expected[jacobian.shape[1:]])


def test_jac_default_inputs_are_in_a_deterministic_order():
    model = make_cnn()
    x = torch.randn(2, 2, 6, 6)
    first = jac(model(x))
    second = jac(model(x))

    assert_all_close(first, second)


@chunk_sizes
def test_backward_default_inputs_are_the_leaves(parallel_chunk_size: int | None):
    model = LSTMRegressor()
    x = torch.randn(2, 4, 3, requires_grad=True)
    prediction, c_n = model(x)
    leaves = [x] + list(model.parameters())

    expected = autograd_jacobians([prediction, c_n], leaves)
    backward([prediction, c_n], parallel_chunk_size=parallel_chunk_size)

    assert_all_close([leaf.jac for leaf in leaves], expected)


def gradient_of(scalar: Tensor, params: Sequence[Tensor]) -> tuple[Tensor, ...]:
    # The last layer's bias has a constant Jacobian: the squared norm does not depend on it.
    return torch.autograd.grad(scalar, params, allow_unused=True, materialize_grads=True)


def squared_frobenius_norm_gradient(output: Tensor, params: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """
    The reference of a second-order quantity: the gradient w.r.t. ``params`` of the squared
    Frobenius norm of the Jacobian of ``output``, from a loop of ``create_graph=True`` gradients.
    """

    squared_norm = output.new_zeros(())
    for scalar in output.flatten():
        row = torch.autograd.grad(scalar, params, retain_graph=True, create_graph=True)
        squared_norm = squared_norm + sum(g.square().sum() for g in row)
    return gradient_of(squared_norm, params)


@chunk_sizes
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_jac_with_create_graph_gives_differentiable_jacobians(
    parallel_chunk_size: int | None, dtype: torch.dtype
):
    model = make_mlp(dtype)
    params = list(model.parameters())
    x = torch.randn(4, 5, dtype=dtype)

    expected = squared_frobenius_norm_gradient(model(x), params)
    jacobians = jac(
        model(x), params, retain_graph=True, parallel_chunk_size=parallel_chunk_size,
        create_graph=True,
    )
    squared_norm = sum(j.square().sum() for j in jacobians)
    gradient = gradient_of(squared_norm, params)

    assert jacobians[0].requires_grad  # The last bias's Jacobian is constant, so it may not.
    assert_all_close(gradient, expected)


def test_jac_with_create_graph_matches_functional_jacobian():
    # A second independent reference: torch.autograd.functional.jacobian of a function of the
    # parameters, itself differentiable with create_graph=True.
    model = make_mlp(torch.float64)
    names = [name for name, _ in model.named_parameters()]
    params = list(model.parameters())
    x = torch.randn(4, 5, dtype=torch.float64)

    def output_of(*values: Tensor) -> Tensor:
        return torch.func.functional_call(model, dict(zip(names, values)), (x,))

    functional = torch.autograd.functional.jacobian(output_of, tuple(params), create_graph=True)
    expected = gradient_of(sum(j.square().sum() for j in functional), params)
    jacobians = jac(model(x), params, retain_graph=True, create_graph=True)
    gradient = gradient_of(sum(j.square().sum() for j in jacobians), params)

    assert_all_close([j.reshape(f.shape) for j, f in zip(jacobians, functional)], functional)
    assert_all_close(gradient, expected)


@chunk_sizes
def test_backward_with_create_graph_gives_differentiable_jac_fields(
    parallel_chunk_size: int | None,
):
    model = TwiceApplied()
    params = list(model.parameters())
    x = torch.randn(3, 4)

    expected = squared_frobenius_norm_gradient(model(x), params)
    backward(
        model(x), retain_graph=True, parallel_chunk_size=parallel_chunk_size, create_graph=True
    )
    gradient = gradient_of(sum(p.jac.square().sum() for p in params), params)

    assert_all_close(gradient, expected)


@chunk_sizes
def test_jac_with_create_graph_alone_gives_differentiable_jacobians(
    parallel_chunk_size: int | None,
):
    model = make_mlp()
    params = list(model.parameters())
    x = torch.randn(4, 5)

    # As torch.autograd.grad, create_graph=True alone must keep the buffers that the Jacobians'
    # graph needs (regression test: they used to be freed with the default retain_graph=False).
    expected = squared_frobenius_norm_gradient(model(x), params)
    jacobians = jac(model(x), params, parallel_chunk_size=parallel_chunk_size, create_graph=True)
    gradient = gradient_of(sum(j.square().sum() for j in jacobians), params)

    assert_all_close(gradient, expected)


def test_backward_with_create_graph_alone_gives_differentiable_jac_fields():
    model = TwiceApplied()
    params = list(model.parameters())
    x = torch.randn(3, 4)

    expected = squared_frobenius_norm_gradient(model(x), params)
    backward(model(x), create_graph=True)
    gradient = gradient_of(sum(p.jac.square().sum() for p in params), params)

    assert_all_close(gradient, expected)


@chunk_sizes
def test_jac_repeats_the_jacobian_of_a_repeated_input(parallel_chunk_size: int | None):
    model = make_mlp()
    output = model(torch.randn(4, 5))
    weight, bias = model[2].weight, model[0].bias

    expected = autograd_jacobians(output, [weight, bias])
    jacobians = jac(output, [weight, bias, weight], parallel_chunk_size=parallel_chunk_size)

    assert_all_close(jacobians, [expected[0], expected[1], expected[0]])


@chunk_sizes
def test_jac_and_backward_accept_a_parameter_generator_as_inputs(parallel_chunk_size: int | None):
    model = make_cnn()
    x = torch.randn(2, 2, 6, 6)
    params = list(model.parameters())
    output = model(x)

    expected = autograd_jacobians(output, params)
    jacobians = jac(
        output, model.parameters(), retain_graph=True, parallel_chunk_size=parallel_chunk_size
    )
    backward(output, inputs=model.parameters(), parallel_chunk_size=parallel_chunk_size)

    assert_all_close(jacobians, expected)
    assert_all_close([p.jac for p in params], expected)


@chunk_sizes
def test_backward_into_an_activation_that_retains_grad_matches_autograd_loop(
    parallel_chunk_size: int | None,
):
    model = make_mlp()
    hidden = model[1](model[0](torch.randn(4, 5)))
    hidden.retain_grad()
    output = model[2](hidden)
    inputs = [hidden, model[0].weight]

    expected = autograd_jacobians(output, inputs)
    # torch.autograd.grad also accumulates into the .grad of a tensor that retains grad.
    expected_grad = hidden.grad.clone()
    hidden.grad = None
    if parallel_chunk_size == 1:
        backward(output, inputs=inputs, parallel_chunk_size=parallel_chunk_size)
    else:
        # torch.vmap would leave an escaped batched tensor in hidden.grad: rows one at a time.
        with pytest.warns(VmapFallbackWarning, match="retains grad"):
            backward(output, inputs=inputs, parallel_chunk_size=parallel_chunk_size)

    assert_all_close([hidden.jac, model[0].weight.jac], expected)
    assert_close(hidden.grad.clone(), expected_grad)
