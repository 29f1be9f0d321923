"""Checks and reference computations shared by the tests of the stateful aggregators."""

import copy
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.testing import assert_close


def _run(module: nn.Module, inputs: Sequence[Tensor], seed: int) -> list[Tensor]:
    torch.manual_seed(seed)
    return [module(x) for x in inputs]


def assert_reset_restores_initial_behaviour(
    make: Callable[[], nn.Module], inputs: Sequence[Tensor], seed: int = 0
) -> None:
    """After running on ``inputs`` and calling ``reset()``, the module repeats its first outputs."""
    module = make()
    first = _run(module, inputs, seed)
    module.reset()
    again = _run(module, inputs, seed)
    for expected, actual in zip(first, again):
        assert_close(actual, expected, rtol=0, atol=0)


def assert_state_dict_round_trip(
    make: Callable[[], nn.Module],
    before: Sequence[Tensor],
    after: Sequence[Tensor],
    seed: int = 0,
) -> None:
    """A fresh instance loaded with the state dict (or a deep copy) continues identically."""
    module = make()
    _run(module, before, seed)
    state = copy.deepcopy(module.state_dict())
    assert all(t.numel() > 0 for t in state.values()), "a state buffer was left empty"
    fresh = make()
    fresh.load_state_dict(state)
    copied = copy.deepcopy(module)
    expected = _run(module, after, seed + 1)
    for other in (fresh, copied):
        for e, actual in zip(expected, _run(other, after, seed + 1)):
            assert_close(actual, e, rtol=0, atol=0)


def simplex_projection_2d(v: Sequence[float]) -> list[float]:
    """Euclidean projection of a 2-vector onto the probability simplex, written plainly."""
    a, b = v
    shift = (1.0 - a - b) / 2
    a, b = a + shift, b + shift
    if a < 0:
        return [0.0, 1.0]
    if b < 0:
        return [1.0, 0.0]
    return [a, b]
