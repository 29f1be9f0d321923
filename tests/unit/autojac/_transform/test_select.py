import pytest
import torch

from torchjd.autojac._transform import RequirementError, Select


def test_select_keeps_only_given_keys():
    a, b = torch.zeros(2), torch.zeros(3)
    input = {a: torch.ones(2), b: torch.ones(3)}
    output = Select([b])(input)
    assert list(output) == [b]
    assert output[b] is input[b]


def test_select_check_keys_rejects_missing_keys():
    a, b = torch.zeros(2), torch.zeros(3)
    assert Select([a]).check_keys({a, b}) == {a}
    with pytest.raises(RequirementError, match="absent"):
        Select([a, b]).check_keys({a})
