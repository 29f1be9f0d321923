import torch
from torch import nn

from torchjd.autojac._graph import find_vmap_incompatibility, get_leaves


def test_get_leaves_breadth_first_from_roots():
    a, b, c = (torch.tensor(1.0, requires_grad=True) for _ in range(3))
    y = a + (b * c)
    assert [id(t) for t in get_leaves([y])] == [id(a), id(b), id(c)]


def test_get_leaves_skips_tensors_without_grad_and_dedups():
    a = torch.tensor(1.0, requires_grad=True)
    constant = torch.tensor(2.0)
    y = a * constant + a
    assert [id(t) for t in get_leaves([y])] == [id(a)]


def test_get_leaves_does_not_go_through_excluded():
    trunk = nn.Linear(2, 2)
    head = nn.Linear(2, 1)
    features = trunk(torch.randn(3, 2))
    loss = head(features).sum()
    leaves = get_leaves([loss], excluded=[features])
    assert {id(t) for t in leaves} == {id(head.weight), id(head.bias)}


def test_get_leaves_includes_a_root_that_is_a_leaf():
    a = torch.tensor([1.0], requires_grad=True)
    assert [id(t) for t in get_leaves([a])] == [id(a)]


def test_find_vmap_incompatibility_on_plain_graph_is_none():
    x = torch.ones(2, requires_grad=True)
    assert find_vmap_incompatibility([(x * 2).sum()]) is None


def test_find_vmap_incompatibility_finds_compiled_function():
    linear = nn.Linear(2, 2)
    compiled = torch.compile(linear, backend="aot_eager")
    y = compiled(torch.randn(3, 2)).relu().sum()
    assert "torch.compile" in find_vmap_incompatibility([y])
