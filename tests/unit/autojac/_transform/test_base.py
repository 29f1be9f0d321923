import pytest
import torch

from torchjd.autojac._transform import (
    AccumulateGrad,
    Conjunction,
    Diagonalize,
    Init,
    Jac,
    RequirementError,
    Select,
)


def test_composition_applies_inner_then_outer():
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    b = torch.tensor(3.0, requires_grad=True)
    transform = Select([b]) << Init([a, b])
    output = transform({})
    assert list(output) == [b]
    torch.testing.assert_close(output[b], torch.tensor(1.0))


def test_composition_check_keys_chains_both():
    a = torch.ones(2, requires_grad=True)
    b = torch.ones(2, requires_grad=True)
    assert (Select([a]) << Init([a, b])).check_keys(set()) == {a}
    with pytest.raises(RequirementError):
        (Select([b]) << Init([a])).check_keys(set())


def test_conjunction_unites_outputs():
    a = torch.ones(2, requires_grad=True)
    b = torch.ones(3, requires_grad=True)
    transform = Select([a]) | Select([b])
    input = {a: torch.full((2,), 5.0), b: torch.full((3,), 7.0)}
    output = transform(input)
    assert set(output) == {a, b}
    torch.testing.assert_close(output[a], input[a])
    torch.testing.assert_close(output[b], input[b])
    assert transform.check_keys({a, b}) == {a, b}


def test_conjunction_rejects_overlapping_outputs():
    a = torch.ones(2, requires_grad=True)
    with pytest.raises(RequirementError, match="disjoint"):
        (Select([a]) | Select([a])).check_keys({a})


def test_conjunction_of_conjunctions_is_flat():
    a = torch.ones(2, requires_grad=True)
    transform = Select([a]) | Select([a]) | Select([a])
    assert isinstance(transform, Conjunction)
    assert len(transform.transforms) == 3


def test_requirement_error_is_a_value_error():
    assert issubclass(RequirementError, ValueError)


def test_str_of_compositions_and_conjunctions():
    a = torch.ones(2, requires_grad=True)
    y = (a * 2).sum()
    assert str(Jac([y], [a]) << Diagonalize([y]) << Init([y])) == "Jac ∘ Diagonalize ∘ Init"
    assert str((Select([a]) | AccumulateGrad() << Select([a])) << Init([a])) == (
        "(Select | (AccumulateGrad ∘ Select)) ∘ Init"
    )
