import pytest

from torchjd._hyperparameter import Hyperparameter


def _positive(name: str, value: object) -> float:
    if not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"Parameter `{name}` should be positive. Found `{value}`.")
    return float(value)


class _Method:
    rate = Hyperparameter(_positive)

    def __init__(self, rate: float):
        self.rate = rate


def test_value_is_checked_and_converted_at_construction_and_assignment():
    method = _Method(2)
    assert method.rate == 2.0 and isinstance(method.rate, float)
    method.rate = 0.5
    assert method.rate == 0.5
    with pytest.raises(ValueError, match="`rate` should be positive"):
        method.rate = -1.0
    assert method.rate == 0.5  # a refused value leaves the previous one
    with pytest.raises(ValueError, match="`rate`"):
        _Method(0.0)


def test_each_instance_has_its_own_value():
    first, second = _Method(1.0), _Method(3.0)
    assert (first.rate, second.rate) == (1.0, 3.0)
    assert isinstance(_Method.rate, Hyperparameter)  # the class attribute is the descriptor
