import warnings

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


def _expected_step(losses, shared, tasks_params):
    """The Jacobian w.r.t. ``shared`` and each task's gradient w.r.t. its own parameters."""

    jacobian = [
        torch.stack(column)
        for column in zip(*[torch.autograd.grad(l, shared, retain_graph=True) for l in losses])
    ]
    grads = {}
    for loss, params in zip(losses, tasks_params):
        for param, grad in zip(params, torch.autograd.grad(loss, params, retain_graph=True)):
            grads[param] = grads.get(param, 0) + grad
    return jacobian, grads


def test_second_call_on_freed_graph_raises_and_writes_nothing():
    trunk, heads, features, losses = _model()
    mtl_backward(losses, features)
    grads = [p.grad.clone() for h in heads for p in h.parameters()]
    jacs = [p.jac.clone() for p in trunk.parameters()]
    with pytest.raises(RuntimeError, match="second time"):
        mtl_backward(losses, features)
    for param, grad in zip([p for h in heads for p in h.parameters()], grads):
        torch.testing.assert_close(param.grad, grad)  # Not doubled.
    for param, jacobian in zip(trunk.parameters(), jacs):
        torch.testing.assert_close(param.jac, jacobian)


def test_empty_shared_params_fills_task_grads_and_writes_no_jac():
    trunk, heads, features, losses = _model()
    tasks_params = [list(h.parameters()) for h in heads]
    _, expected = _expected_step(losses, list(trunk.parameters()), tasks_params)
    mtl_backward(losses, features, shared_params=[])
    for param, grad in expected.items():
        torch.testing.assert_close(param.grad, grad)
    assert all(getattr(p, "jac", None) is None and p.grad is None for p in trunk.parameters())


def _overlapping_heads():
    """Two tasks whose heads share a layer above the features: the heads' graphs overlap."""

    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
    shared_head = nn.Linear(4, 3)
    scale = torch.tensor(1.5, requires_grad=True)
    features = trunk(torch.randn(5, 3))
    hidden = shared_head(features)
    losses = [hidden[:, 0].square().mean() * scale, hidden[:, 1:].abs().mean()]
    tasks_params = [list(shared_head.parameters()) + [scale], list(shared_head.parameters())]
    return trunk, features, losses, tasks_params


@pytest.mark.parametrize("chunk_size", [None, 1, 2])
def test_repeated_calls_match_autograd_whichever_pass_is_chosen(chunk_size):
    # Seven calls on the same parameters: with chunk_size=None, the first ones alternate between
    # the vectorized pass and the loop (timed), the later ones use the chosen one.
    for _ in range(7):
        trunk, features, losses, tasks_params = _overlapping_heads()
        shared = list(trunk.parameters())
        expected_jac, expected_grads = _expected_step(losses, shared, tasks_params)
        mtl_backward(
            losses,
            features,
            tasks_params=tasks_params,
            shared_params=shared,
            parallel_chunk_size=chunk_size,
        )
        for param, expected in zip(shared, expected_jac):
            torch.testing.assert_close(param.jac, expected)
        for param, expected in expected_grads.items():
            torch.testing.assert_close(param.grad, expected)


def test_task_param_only_gets_the_gradients_of_its_tasks():
    # `scale` is used by both tasks but declared for the first one only.
    for chunk_size in [None, 1]:
        trunk, features, losses, tasks_params = _overlapping_heads()
        scale = tasks_params[0][-1]
        expected = torch.autograd.grad(losses[0], [scale], retain_graph=True)[0]
        losses[1] = losses[1] * scale
        mtl_backward(losses, features, tasks_params=tasks_params, parallel_chunk_size=chunk_size)
        torch.testing.assert_close(scale.grad, expected)


class _NotVmappable(torch.autograd.Function):
    @staticmethod
    def forward(x):
        return x * 2

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        if grad.sum() > float("inf"):  # Data-dependent control flow: torch.vmap cannot run it.
            raise AssertionError
        return grad * 2


def test_separate_heads_run_one_pass_per_task_without_vmap():
    trunk, heads, features, _ = _model()
    losses = [_NotVmappable.apply(h(features)).square().mean() for h in heads]
    expected_jac, expected_grads = _expected_step(
        losses, list(trunk.parameters()), [list(h.parameters()) for h in heads]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # No VmapFallbackWarning: the heads never go through vmap.
        mtl_backward(losses, features)
    for param, expected in zip(trunk.parameters(), expected_jac):
        torch.testing.assert_close(param.jac, expected)
    for param, expected in expected_grads.items():
        torch.testing.assert_close(param.grad, expected)


def test_signature_matches_torchjd_0_18():
    import inspect

    P = inspect.Parameter
    kinds = {name: p.kind for name, p in inspect.signature(mtl_backward).parameters.items()}
    assert kinds == {
        "tensors": P.POSITIONAL_ONLY,
        "features": P.POSITIONAL_OR_KEYWORD,
        "grad_tensors": P.KEYWORD_ONLY,
        "tasks_params": P.KEYWORD_ONLY,
        "shared_params": P.KEYWORD_ONLY,
        "retain_graph": P.KEYWORD_ONLY,
        "parallel_chunk_size": P.KEYWORD_ONLY,
    }
