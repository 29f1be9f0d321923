import pytest
import torch
from torch import nn

from torchjd.autojac import VmapFallbackWarning, jac


def _autograd_loop(outputs, inputs):
    """The Jacobians by one torch.autograd.grad call per scalar of the outputs."""
    flat = torch.cat([o.reshape(-1) for o in outputs])
    rows = []
    for scalar in flat:
        grads = torch.autograd.grad(scalar, inputs, retain_graph=True, allow_unused=True)
        rows.append([torch.zeros_like(i) if g is None else g for g, i in zip(grads, inputs)])
    return [torch.stack(column) for column in zip(*rows)]


@pytest.mark.parametrize("chunk_size", [None, 1, 2, 100])
def test_jac_matches_autograd_loop(chunk_size):
    torch.manual_seed(0)
    w = torch.randn(3, 4, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    x = torch.randn(4)
    y1 = torch.tanh(w @ x + b)
    y2 = (w**2).sum()
    expected = _autograd_loop([y1, y2], [w, b])
    result = jac([y1, y2], [w, b], parallel_chunk_size=chunk_size)
    assert len(result) == 2
    for value, reference in zip(result, expected):
        torch.testing.assert_close(value, reference)


def test_jac_of_single_tensor_output():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    (result,) = jac(x**2, [x])
    torch.testing.assert_close(result, torch.diag(2 * x.detach()))


def test_jac_default_inputs_are_leaves_in_breadth_first_order():
    a = torch.tensor(2.0, requires_grad=True)
    b = torch.tensor(3.0, requires_grad=True)
    c = torch.tensor(5.0, requires_grad=True)
    y = a * (b + c)
    ja, jb, jc = jac(y)
    torch.testing.assert_close(torch.stack([ja, jb, jc]), torch.tensor([[8.0], [2.0], [2.0]]))


def test_jac_repeated_input_gets_repeated_jacobian():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    first, second = jac(x * 3, [x, x])
    torch.testing.assert_close(first, 3 * torch.eye(2))
    torch.testing.assert_close(second, first)


def test_jac_unreached_input_gets_zeros():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    unused = torch.ones(3, requires_grad=True)
    _, result = jac(x.sum(), [x, unused])
    torch.testing.assert_close(result, torch.zeros(1, 3))


def test_jac_with_jac_outputs_left_multiplies():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = x**2
    jac_outputs = torch.tensor([[1.0, 1.0], [1.0, -1.0], [0.0, 2.0]])
    (result,) = jac(y, [x], jac_outputs=jac_outputs)
    torch.testing.assert_close(result, jac_outputs @ torch.diag(2 * x.detach()))


def test_jac_retain_graph_allows_second_call():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = x**2
    first = jac(y, [x], retain_graph=True)
    second = jac(y, [x])
    torch.testing.assert_close(first[0], second[0])
    with pytest.raises(RuntimeError, match="second time"):
        jac(y, [x])


def test_jac_create_graph_gives_differentiable_jacobians():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    (result,) = jac((x**3).sum(), [x], create_graph=True)  # [1, 2]: 3 x^2
    (hessian_diagonal,) = torch.autograd.grad(result.sum(), [x])
    torch.testing.assert_close(hessian_diagonal, 6 * x.detach())


def test_jac_follows_dtype():
    x = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    (result,) = jac(x.sin(), [x])
    assert result.dtype == torch.float64
    torch.testing.assert_close(result, torch.diag(x.detach().cos()))


def test_jac_through_retained_grad_tensor_matches_loop():
    x = torch.randn(3, requires_grad=True)
    h = x * 2
    h.retain_grad()
    y = h.tanh()
    expected = _autograd_loop([y], [x])
    (result,) = jac(y, [x], retain_graph=True)
    torch.testing.assert_close(result, expected[0])


def test_jac_through_lstm_matches_loop():
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4)
    output, _ = lstm(torch.randn(5, 2, 3))
    y = output[-1].sum(dim=1)
    params = list(lstm.parameters())
    expected = _autograd_loop([y], params)
    result = jac(y, params)
    for value, reference in zip(result, expected):
        torch.testing.assert_close(value, reference)


def test_jac_through_compiled_module_falls_back_with_identical_result():
    torch.manual_seed(0)
    linear = nn.Linear(3, 2)
    compiled = torch.compile(linear, backend="aot_eager")
    y = compiled(torch.randn(4, 3)).relu().sum(dim=0)
    params = list(linear.parameters())
    expected = _autograd_loop([y], params)
    with pytest.warns(VmapFallbackWarning):
        result = jac(y, params)
    for value, reference in zip(result, expected):
        torch.testing.assert_close(value, reference)


# Input validation: each error names the argument and comes before any differentiation.


def test_jac_rejects_empty_outputs():
    with pytest.raises(ValueError, match="`outputs`.*non-empty"):
        jac([])


def test_jac_rejects_duplicated_outputs():
    x = torch.ones(2, requires_grad=True)
    y = x * 2
    with pytest.raises(ValueError, match="`outputs`.*twice"):
        jac([y, y], [x])


def test_jac_rejects_outputs_that_do_not_require_grad():
    with pytest.raises(ValueError, match="`outputs`.*require grad"):
        jac([torch.ones(2)])


def test_jac_rejects_non_tensor_outputs():
    with pytest.raises(TypeError, match="`outputs`"):
        jac([1.0])


def test_jac_rejects_input_that_does_not_require_grad():
    x = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match="`inputs`.*require grad"):
        jac(x * 2, [x, torch.ones(2)])


@pytest.mark.parametrize("chunk_size", [0, -3])
def test_jac_rejects_non_positive_chunk_size(chunk_size):
    x = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match="`parallel_chunk_size`"):
        jac(x * 2, [x], parallel_chunk_size=chunk_size)


def test_jac_rejects_non_int_chunk_size():
    x = torch.ones(2, requires_grad=True)
    with pytest.raises(TypeError, match="`parallel_chunk_size`"):
        jac(x * 2, [x], parallel_chunk_size=2.0)


def test_jac_rejects_jac_outputs_of_wrong_structure():
    x = torch.ones(2, requires_grad=True)
    y1, y2 = x * 2, x.sum()
    with pytest.raises(ValueError, match="`jac_outputs`.*one Jacobian per tensor"):
        jac([y1, y2], [x], jac_outputs=[torch.ones(1, 2)])
    with pytest.raises(TypeError, match="`jac_outputs`"):
        jac([y1, y2], [x], jac_outputs=torch.ones(1, 2))
    with pytest.raises(TypeError, match="`jac_outputs`"):
        jac(y1, [x], jac_outputs=[torch.ones(1, 2)])


def test_jac_rejects_jac_outputs_of_wrong_shape():
    x = torch.ones(2, requires_grad=True)
    y1, y2 = x * 2, x.sum()
    with pytest.raises(ValueError, match=r"`jac_outputs`.*shape \[m\] \+ \[2\]"):
        jac([y1, y2], [x], jac_outputs=[torch.ones(3, 3), torch.ones(3)])
    with pytest.raises(ValueError, match="`jac_outputs`.*same leading dimension"):
        jac([y1, y2], [x], jac_outputs=[torch.ones(3, 2), torch.ones(4)])


def test_jac_errors_leave_graph_usable():
    x = torch.ones(2, requires_grad=True)
    y = x * 2
    with pytest.raises(ValueError):
        jac(y, [x], parallel_chunk_size=0)
    (result,) = jac(y, [x])  # The failed call did not differentiate, so the graph is intact.
    torch.testing.assert_close(result, 2 * torch.eye(2))


def test_jac_repeated_on_the_same_parameters_matches_loop_whichever_pass_is_chosen():
    # With parallel_chunk_size=None, the first calls on the same parameters alternate between the
    # vectorized pass and the row loop (timed), and the later ones use the faster.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 4))
    params = list(model.parameters())
    for _ in range(8):
        y = model(torch.randn(1, 2, 4, 4)).squeeze(0)
        expected = _autograd_loop([y], params)
        result = jac(y, params)
        for value, reference in zip(result, expected):
            torch.testing.assert_close(value, reference)


def test_jac_rejects_jac_outputs_on_another_device():
    x = torch.randn(3, requires_grad=True)
    y = x * 2
    with pytest.raises(ValueError, match="`jac_outputs`.*device"):
        jac(y, [x], jac_outputs=torch.ones(2, 3, device="meta"))
    (result,) = jac(y, [x], jac_outputs=torch.ones(2, 3))  # The graph was left usable.
    torch.testing.assert_close(result, 2 * torch.ones(2, 3))


def test_jac_keeps_the_signature_of_the_reference_page():
    import inspect

    P = inspect.Parameter
    parameters = inspect.signature(jac).parameters
    assert {name: (p.kind, p.default) for name, p in parameters.items()} == {
        "outputs": (P.POSITIONAL_OR_KEYWORD, P.empty),
        "inputs": (P.POSITIONAL_OR_KEYWORD, None),
        "jac_outputs": (P.POSITIONAL_OR_KEYWORD, None),
        "retain_graph": (P.POSITIONAL_OR_KEYWORD, False),
        "parallel_chunk_size": (P.POSITIONAL_OR_KEYWORD, None),
        "create_graph": (P.KEYWORD_ONLY, False),
    }


def test_jac_of_outputs_that_retain_grad_falls_back_to_rows_with_a_usable_grad():
    x = torch.randn(3, requires_grad=True)
    y = x.sin()
    y.retain_grad()
    with pytest.warns(VmapFallbackWarning, match="retains grad"):
        (result,) = jac(y, [x])
    torch.testing.assert_close(result, torch.diag(x.detach().cos()))
    torch.testing.assert_close(y.grad.clone(), torch.ones(3))  # One one-hot row at a time.
