import pytest
import torch

from torchjd.autojac._transform import RequirementError, SumRows


def test_sum_rows_sums_the_given_rows_of_each_key():
    a, b, c = torch.zeros(2), torch.zeros([]), torch.zeros(1, 2)
    jacobians = {a: torch.arange(6.0).reshape(3, 2), b: torch.tensor([1.0, 2.0, 4.0]), c: torch.ones(3, 1, 2)}
    output = SumRows({a: [1], b: [0, 2], c: [0, 1, 2]})(jacobians)
    torch.testing.assert_close(output[a], torch.tensor([2.0, 3.0]))
    torch.testing.assert_close(output[b], torch.tensor(5.0))
    torch.testing.assert_close(output[c], torch.full((1, 2), 3.0))


def test_sum_rows_check_keys_requires_its_keys_exactly():
    a, b = torch.zeros(2), torch.zeros(2)
    assert SumRows({a: [0]}).check_keys({a}) == {a}
    with pytest.raises(RequirementError):
        SumRows({a: [0]}).check_keys({a, b})
