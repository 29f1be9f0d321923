import pytest
import torch

from torchjd.autojac._transform import AccumulateGrad, AccumulateJac


def test_accumulate_jac_creates_then_adds():
    a = torch.zeros(2, requires_grad=True)
    jacobian = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert AccumulateJac()({a: jacobian}) == {}
    torch.testing.assert_close(a.jac, jacobian)
    AccumulateJac()({a: jacobian})
    torch.testing.assert_close(a.jac, 2 * jacobian)


def test_accumulate_jac_checks_every_shape_before_writing():
    a = torch.zeros(2, requires_grad=True)
    b = torch.zeros(2, requires_grad=True)
    b.jac = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="existing"):
        AccumulateJac()({a: torch.ones(2, 2), b: torch.ones(2, 2)})
    assert getattr(a, "jac", None) is None  # nothing half-written
    with pytest.raises(ValueError, match="shape"):
        AccumulateJac()({a: torch.ones(2, 3)})


def test_accumulate_grad_creates_then_adds():
    a = torch.zeros(2, requires_grad=True)
    gradient = torch.tensor([1.0, -1.0])
    assert AccumulateGrad()({a: gradient}) == {}
    torch.testing.assert_close(a.grad, gradient)
    AccumulateGrad()({a: gradient})
    torch.testing.assert_close(a.grad, 2 * gradient)


def test_accumulate_grad_rejects_wrong_shape_before_writing():
    a = torch.zeros(2, requires_grad=True)
    b = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError):
        AccumulateGrad()({a: torch.ones(2), b: torch.ones(3)})
    assert a.grad is None


def test_accumulate_check_keys_produce_nothing():
    a = torch.zeros(2)
    assert AccumulateJac().check_keys({a}) == set()
    assert AccumulateGrad().check_keys({a}) == set()
