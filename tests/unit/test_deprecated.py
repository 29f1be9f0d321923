import warnings

import pytest
import torch

import torchjd
from torchjd._deprecated import deprecated_alias


def test_top_level_backward_fills_jac_like_autojac_backward_and_warns():
    param = torch.tensor([1.0, 2.0], requires_grad=True)
    with pytest.warns(DeprecationWarning, match="torchjd.autojac.backward"):
        torchjd.backward([param.sum(), (param**2).sum()])
    expected = torch.stack(
        [torch.autograd.grad(y, param)[0] for y in (param.sum(), (param**2).sum())]
    )
    torch.testing.assert_close(param.jac, expected)


def test_top_level_mtl_backward_is_the_autojac_one():
    torch.manual_seed(0)
    trunk, head_1, head_2 = torch.nn.Linear(3, 2), torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    features = trunk(torch.randn(4, 3))
    losses = [head_1(features).mean(), head_2(features).square().mean()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torchjd.mtl_backward(losses, features)
    assert trunk.weight.jac.shape == (2, 2, 3) and head_1.weight.grad is not None


def test_alias_warns_only_on_its_first_call():
    calls = []
    alias = deprecated_alias(lambda x: calls.append(x) or x, "old.name", "new.name")
    with pytest.warns(DeprecationWarning, match="`old.name` is deprecated.*`new.name`"):
        assert alias(1) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert alias(2) == 2
    assert calls == [1, 2] and alias.__name__ == "name"
