import time

import pytest
import torch

from torchjd.autojac._transform import Fastest, RequirementError, Select, Transform
from torchjd.autojac._transform._fastest import _TRIALS, forget_timings


class _Timed(Transform):
    """Returns its input after ``seconds`` of busy work, and counts its calls."""

    def __init__(self, seconds: float, keys):
        self.seconds = seconds
        self.keys = set(keys)
        self.calls = 0

    def __call__(self, input):
        self.calls += 1
        end = time.perf_counter() + self.seconds
        while time.perf_counter() < end:  # Busy, so that CPU time counts it too.
            pass
        return dict(input)

    def check_keys(self, input_keys):
        return set(self.keys)


def _fastest(alternatives, anchor):
    return Fastest(alternatives, ("test", id(anchor)), [anchor], torch.device("cpu"))


@pytest.fixture(autouse=True)
def _no_previous_timings():
    forget_timings()
    yield
    forget_timings()


def test_alternates_then_keeps_the_clearly_faster():
    anchor = torch.zeros(1)
    slow, fast = _Timed(0.02, [anchor]), _Timed(0.0, [anchor])
    for _ in range(2 * _TRIALS):
        _fastest([slow, fast], anchor)({anchor: anchor})
    assert slow.calls == fast.calls == _TRIALS
    for _ in range(5):
        assert _fastest([slow, fast], anchor)({anchor: anchor}) == {anchor: anchor}
    assert slow.calls == _TRIALS and fast.calls == _TRIALS + 5


def test_keeps_the_default_unless_another_is_clearly_faster():
    anchor = torch.zeros(1)
    default, other = _Timed(0.0, [anchor]), _Timed(0.02, [anchor])
    for _ in range(2 * _TRIALS + 5):
        _fastest([default, other], anchor)({anchor: anchor})
    assert other.calls == _TRIALS and default.calls == _TRIALS + 5


def test_a_new_key_starts_with_the_default():
    a, b = torch.zeros(1), torch.zeros(1)
    default, other = _Timed(0.0, [a]), _Timed(0.0, [a])
    _fastest([default, other], a)({a: a})
    _fastest([default, other], b)({a: a})
    assert default.calls == 2 and other.calls == 0


def test_record_is_dropped_when_its_tensors_are_gone():
    anchor = torch.zeros(1)
    slow, fast = _Timed(0.02, [anchor]), _Timed(0.0, [anchor])
    key = ("test", 0)
    for _ in range(2 * _TRIALS):
        Fastest([slow, fast], key, [anchor], torch.device("cpu"))({})
    other = torch.zeros(1)  # Same key, other tensors (as when an id is reused): a fresh record.
    Fastest([slow, fast], key, [other], torch.device("cpu"))({})
    assert slow.calls == _TRIALS + 1


def test_deterministic_mode_always_uses_the_default():
    anchor = torch.zeros(1)
    slow, fast = _Timed(0.01, [anchor]), _Timed(0.0, [anchor])
    torch.use_deterministic_algorithms(True)
    try:
        for _ in range(2 * _TRIALS + 2):
            _fastest([slow, fast], anchor)({})
    finally:
        torch.use_deterministic_algorithms(False)
    assert fast.calls == 0


def test_check_keys_requires_alternatives_with_the_same_keys():
    a, b = torch.zeros(1), torch.zeros(2)
    assert _fastest([Select([a]), Select([a])], a).check_keys({a, b}) == {a}
    with pytest.raises(RequirementError):
        _fastest([Select([a]), Select([b])], a).check_keys({a, b})


def test_str_lists_the_alternatives():
    a = torch.zeros(1)
    assert str(_fastest([Select([a]), Select([a])], a)) == "Fastest(Select, Select)"
