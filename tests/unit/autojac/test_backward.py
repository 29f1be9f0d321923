import pytest
import torch

from torchjd.autojac import VmapFallbackWarning, backward


def _autograd_rows(scalars, inputs):
    rows = [torch.autograd.grad(s, inputs, retain_graph=True) for s in scalars]
    return [torch.stack(column) for column in zip(*rows)]


@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_backward_stores_jacobians_in_jac_fields(chunk_size):
    torch.manual_seed(0)
    w = torch.randn(2, 3, requires_grad=True)
    b = torch.randn(2, requires_grad=True)
    y1 = torch.sigmoid(w @ torch.randn(3) + b)
    y2 = (w.abs().sum() + b.square().sum()).unsqueeze(0)
    expected = _autograd_rows([y1[0], y1[1], y2[0]], [w, b])
    backward([y1, y2], parallel_chunk_size=chunk_size)
    torch.testing.assert_close(w.jac, expected[0])
    torch.testing.assert_close(b.jac, expected[1])
    assert w.grad is None and b.grad is None


def test_backward_accumulates_into_existing_jac():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = x**2
    backward(y, retain_graph=True)
    backward(y)
    torch.testing.assert_close(x.jac, 2 * torch.diag(2 * x.detach()))


def test_backward_with_jac_tensors():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    jac_tensors = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    backward(x**2, jac_tensors=jac_tensors)
    torch.testing.assert_close(x.jac, jac_tensors @ torch.diag(2 * x.detach()))


def test_backward_into_tensor_that_retains_grad():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    h.retain_grad()
    backward((h**2).sum(), inputs=[h])
    torch.testing.assert_close(h.jac, (2 * h.detach()).unsqueeze(0))


def test_backward_rejects_non_leaf_input_and_writes_nothing():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    with pytest.raises(ValueError, match="`inputs`.*leaf"):
        backward((h**2).sum(), inputs=[x, h])
    assert getattr(x, "jac", None) is None


def test_backward_rejects_existing_jac_of_wrong_shape_and_writes_nothing():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    z = torch.tensor([3.0], requires_grad=True)
    x.jac = torch.zeros(5, 2)
    with pytest.raises(ValueError, match="`.jac`.*\\[5, 2\\]"):
        backward([x.sum(), z.sum()], inputs=[z, x])
    assert getattr(z, "jac", None) is None
    torch.testing.assert_close(x.jac, torch.zeros(5, 2))


def test_backward_rejects_empty_and_duplicated_tensors():
    x = torch.ones(2, requires_grad=True)
    y = x * 2
    with pytest.raises(ValueError, match="`tensors`"):
        backward([])
    with pytest.raises(ValueError, match="`tensors`.*twice"):
        backward([y, y])
    with pytest.raises(ValueError, match="`parallel_chunk_size`"):
        backward(y, parallel_chunk_size=0)
    with pytest.raises(ValueError, match="`jac_tensors`"):
        backward(y, jac_tensors=torch.ones(2, 3))
    assert getattr(x, "jac", None) is None


def test_backward_signature_matches_torchjd_0_18():
    import inspect

    P = inspect.Parameter
    parameters = inspect.signature(backward).parameters
    assert {name: (p.kind, p.default) for name, p in parameters.items()} == {
        "tensors": (P.POSITIONAL_ONLY, P.empty),
        "jac_tensors": (P.KEYWORD_ONLY, None),
        "inputs": (P.KEYWORD_ONLY, None),
        "retain_graph": (P.KEYWORD_ONLY, False),
        "parallel_chunk_size": (P.KEYWORD_ONLY, None),
        "create_graph": (P.KEYWORD_ONLY, False),
    }
    x = torch.randn(2, requires_grad=True)
    with pytest.raises(TypeError):
        backward(x * 2, torch.eye(2))  # jac_tensors is keyword-only, as in torchjd 0.18.


def test_backward_into_tensor_that_retains_grad_falls_back_to_rows_with_a_usable_grad():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    h.retain_grad()
    with pytest.warns(VmapFallbackWarning, match="retains grad.*parallel_chunk_size=1"):
        backward([h.sum(), (h**2).sum()], inputs=[h])
    expected_jac = torch.stack([torch.ones(2), 2 * h.detach()])
    torch.testing.assert_close(h.jac, expected_jac)
    # As with a torch.autograd.grad per row, the retained .grad receives the sum of the rows.
    torch.testing.assert_close(h.grad.clone(), expected_jac.sum(dim=0))
