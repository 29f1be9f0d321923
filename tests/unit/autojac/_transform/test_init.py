import pytest
import torch

from torchjd.autojac._transform import Init, RequirementError


def test_init_produces_ones_shaped_like_keys():
    a = torch.zeros(2, 3)
    b = torch.zeros([], dtype=torch.float64)
    output = Init([a, b])({})
    torch.testing.assert_close(output[a], torch.ones(2, 3))
    torch.testing.assert_close(output[b], torch.tensor(1.0, dtype=torch.float64))


def test_init_uses_given_values():
    a = torch.zeros(2)
    b = torch.zeros(2)
    value = torch.tensor([3.0, -1.0])
    output = Init([a, b], values={a: value})({})
    assert output[a] is value
    torch.testing.assert_close(output[b], torch.ones(2))


def test_init_check_keys_requires_empty_input():
    a = torch.zeros(2)
    assert Init([a]).check_keys(set()) == {a}
    with pytest.raises(RequirementError):
        Init([a]).check_keys({a})
