import pytest
import torch
from torch import nn

from torchjd.autojac import mtl_backward


def _model():
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
    heads = [nn.Linear(4, 1), nn.Linear(4, 2)]
    x = torch.randn(5, 3)
    features = trunk(x)
    losses = [heads[0](features).square().mean(), heads[1](features).abs().mean()]
    return trunk, heads, features, losses


@pytest.mark.parametrize("chunk_size", [None, 1])
def test_mtl_backward_matches_autograd(chunk_size):
    trunk, heads, features, losses = _model()
    shared = list(trunk.parameters())
    expected_jac = [
        torch.stack(column)
        for column in zip(*[torch.autograd.grad(l, shared, retain_graph=True) for l in losses])
    ]
    expected_grads = [
        torch.autograd.grad(l, list(h.parameters()), retain_graph=True)
        for l, h in zip(losses, heads)
    ]
    mtl_backward(losses, features, parallel_chunk_size=chunk_size)
    for param, expected in zip(shared, expected_jac):
        torch.testing.assert_close(param.jac, expected)
        assert param.grad is None
    for head, grads in zip(heads, expected_grads):
        for param, expected in zip(head.parameters(), grads):
            torch.testing.assert_close(param.grad, expected)
            assert getattr(param, "jac", None) is None


def test_mtl_backward_sums_grads_of_shared_task_param():
    trunk = nn.Linear(2, 3)
    scale = torch.tensor(2.0, requires_grad=True)
    features = trunk(torch.randn(4, 2))
    loss1 = (scale * features).sum()
    loss2 = (scale**2 * features.mean()).sum()
    expected = sum(torch.autograd.grad(l, [scale], retain_graph=True)[0] for l in [loss1, loss2])
    mtl_backward([loss1, loss2], features, tasks_params=[[scale], [scale]])
    torch.testing.assert_close(scale.grad, expected)


def test_mtl_backward_with_grad_tensors_for_non_scalar_tasks():
    trunk = nn.Linear(2, 3)
    features = trunk(torch.randn(4, 2))
    out1, out2 = features.sum(dim=1), features[:, 0] * 2
    g1, g2 = torch.randn(4), torch.randn(4)
    expected = [
        torch.autograd.grad(o, [trunk.weight], g, retain_graph=True)[0]
        for o, g in [(out1, g1), (out2, g2)]
    ]
    mtl_backward([out1, out2], features, grad_tensors=[g1, g2])
    torch.testing.assert_close(trunk.weight.jac, torch.stack(expected))


def test_mtl_backward_requires_grad_tensors_for_non_scalar_tasks():
    trunk, heads, features, losses = _model()
    with pytest.raises(ValueError, match="`grad_tensors`"):
        mtl_backward([losses[0], features.sum(dim=1)], features)
    assert all(getattr(p, "jac", None) is None for p in trunk.parameters())
    assert all(p.grad is None for h in heads for p in h.parameters())


def test_mtl_backward_rejects_bad_arguments_and_writes_nothing():
    trunk, heads, features, losses = _model()
    with pytest.raises(ValueError, match="`tensors`"):
        mtl_backward([], features)
    with pytest.raises(ValueError, match="`features`"):
        mtl_backward(losses, [])
    with pytest.raises(ValueError, match="`tensors`.*twice"):
        mtl_backward([losses[0], losses[0]], features)
    with pytest.raises(ValueError, match="`tasks_params`"):
        mtl_backward(losses, features, tasks_params=[list(heads[0].parameters())])
    with pytest.raises(ValueError, match="`shared_params`"):
        mtl_backward(
            losses,
            features,
            tasks_params=[list(heads[0].parameters()), list(heads[1].parameters())],
            shared_params=list(trunk.parameters()) + [heads[0].weight],
        )
    with pytest.raises(ValueError, match="`grad_tensors`"):
        mtl_backward(losses, features, grad_tensors=[torch.ones(2), torch.ones([])])
    with pytest.raises(ValueError, match="`parallel_chunk_size`"):
        mtl_backward(losses, features, parallel_chunk_size=0)
    assert all(getattr(p, "jac", None) is None for p in trunk.parameters())
    assert all(p.grad is None for h in heads for p in h.parameters())
