import pytest
import torch

from torchjd.autojac._transform import Grad, Jac, RequirementError


def _loop_jacobian(outputs, inputs, rows):
    """Row i: the gradient of sum_k <rows_k[i], outputs_k> with respect to each input."""
    results = []
    for i in range(rows[0].shape[0]):
        grads = torch.autograd.grad(
            outputs, inputs, [r[i] for r in rows], retain_graph=True, allow_unused=True
        )
        results.append([torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)])
    return [torch.stack(column) for column in zip(*results)]


@pytest.mark.parametrize("chunk_size", [None, 1, 2, 5])
def test_jac_matches_autograd_loop(chunk_size):
    x = torch.randn(3, requires_grad=True)
    w = torch.randn(4, 3, requires_grad=True)
    unused = torch.randn(2, requires_grad=True)
    y1 = torch.tanh(w @ x)
    y2 = (x**2).sum()
    rows = [torch.randn(5, 4), torch.randn(5)]
    expected = _loop_jacobian([y1, y2], [x, w, unused], rows)
    output = Jac([y1, y2], [x, w, unused], chunk_size, retain_graph=True)({y1: rows[0], y2: rows[1]})
    for key, value in zip([x, w, unused], expected):
        torch.testing.assert_close(output[key], value)
    torch.testing.assert_close(output[unused], torch.zeros(5, 2))


def test_jac_with_zero_rows_gives_empty_jacobians():
    x = torch.randn(3, requires_grad=True)
    y = x * 2
    output = Jac([y], [x])({y: torch.zeros(0, 3)})
    assert output[x].shape == (0, 3)


def test_jac_create_graph_makes_result_differentiable():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = x**3
    output = Jac([y], [x], create_graph=True)({y: torch.eye(2)})
    (second,) = torch.autograd.grad(output[x].trace(), [x])
    torch.testing.assert_close(second, 6 * x.detach())  # d/dx of sum_i 3 x_i^2


def test_jac_check_keys_requires_outputs():
    x = torch.randn(3, requires_grad=True)
    y = x * 2
    assert Jac([y], [x]).check_keys({y}) == {x}
    with pytest.raises(RequirementError):
        Jac([y], [x]).check_keys({x})


def test_grad_matches_autograd():
    x = torch.randn(3, requires_grad=True)
    y = torch.sin(x)
    z = torch.randn(2, requires_grad=True)
    gradient = torch.randn(3)
    output = Grad([y], [x, z], retain_graph=True)({y: gradient})
    (expected,) = torch.autograd.grad(y, [x], gradient)
    torch.testing.assert_close(output[x], expected)
    torch.testing.assert_close(output[z], torch.zeros(2))
    with pytest.raises(RequirementError):
        Grad([y], [x]).check_keys(set())
