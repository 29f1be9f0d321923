import pytest
import torch

from torchjd.autojac._transform import Diagonalize, DiagonalizeByKey, RequirementError


def test_diagonalize_lays_out_keys_in_order():
    a = torch.zeros(2)
    b = torch.zeros(2, 1)
    c = torch.zeros([])
    gradients = {a: torch.tensor([1.0, 2.0]), b: torch.tensor([[3.0], [4.0]]), c: torch.tensor(5.0)}
    output = Diagonalize([a, b, c])(gradients)
    expected = torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))  # one row per scalar
    torch.testing.assert_close(output[a], expected[:, 0:2])
    torch.testing.assert_close(output[b], expected[:, 2:4].reshape(5, 2, 1))
    torch.testing.assert_close(output[c], expected[:, 4])


def test_diagonalize_of_ones_is_identity():
    a = torch.zeros(3)
    output = Diagonalize([a])({a: torch.ones(3)})
    torch.testing.assert_close(output[a], torch.eye(3))


def test_diagonalize_check_keys_requires_its_keys_exactly():
    a = torch.zeros(2)
    b = torch.zeros(2)
    assert Diagonalize([a, b]).check_keys({a, b}) == {a, b}
    with pytest.raises(RequirementError):
        Diagonalize([a, b]).check_keys({a})
    with pytest.raises(RequirementError):
        Diagonalize([a]).check_keys({a, b})


def test_diagonalize_by_key_gives_one_row_per_key():
    a, b = torch.zeros([]), torch.zeros(2)
    output = DiagonalizeByKey([a, b])({a: torch.tensor(3.0), b: torch.tensor([1.0, 2.0])})
    torch.testing.assert_close(output[a], torch.tensor([3.0, 0.0]))
    torch.testing.assert_close(output[b], torch.tensor([[0.0, 0.0], [1.0, 2.0]]))
    with pytest.raises(RequirementError):
        DiagonalizeByKey([a, b]).check_keys({a})
