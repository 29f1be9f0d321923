import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence, Set

import torch
from torch import Tensor

from ._base import RequirementError, Transform, TensorDict

# How many timed calls each alternative gets before the choice is made; the first one of each is
# only a warm-up (lazy initializations, vmap's first-call costs) and is not counted.
_TRIALS = 4
# An alternative replaces the first (default) one only when it takes less than this fraction of its
# time: close calls stay with the default, so that the choice does not flip with the machine's load.
_MARGIN = 0.85
_MAX_RECORDS = 256


class _Record:
    """What was measured for one key: the timings of each alternative and, once made, the choice."""

    def __init__(self, n_alternatives: int, anchors: Sequence[Tensor]):
        # Keys hold ids of tensors; the weak references tell whether those are still the same
        # tensors (a freed tensor's id may be reused by an unrelated one).
        self.anchors = [weakref.ref(anchor) for anchor in anchors]
        self.timings: list[list[float]] = [[] for _ in range(n_alternatives)]
        self.choice: int | None = None

    def is_for(self, anchors: Sequence[Tensor]) -> bool:
        return len(anchors) == len(self.anchors) and all(
            reference() is anchor for reference, anchor in zip(self.anchors, anchors)
        )


_RECORDS: "OrderedDict[Hashable, _Record]" = OrderedDict()


class Fastest(Transform):
    """
    Applies whichever of several equivalent transforms (same keys, same values up to rounding) is
    the fastest for one graph.

    The calls with the same ``key`` (e.g. the same parameters and shapes, at every step of a
    training loop) first alternate between the alternatives and are timed; after ``_TRIALS`` calls
    of each, the key is bound to the fastest for good. The first alternative is the default: it is
    used for a new key, under ``torch.use_deterministic_algorithms(True)`` (so that results do not
    depend on timings), and unless another one is clearly faster.

    :param alternatives: The equivalent transforms, the default first.
    :param key: What identifies the graph, hashable. It may hold ids of ``anchors``.
    :param anchors: The tensors whose ids ``key`` holds; a record is only reused while they are
        alive.
    :param device: The device the work runs on, synchronized around timed calls on CUDA.
    """

    def __init__(
        self,
        alternatives: Sequence[Transform],
        key: Hashable,
        anchors: Sequence[Tensor],
        device: torch.device,
    ):
        self.alternatives = list(alternatives)
        self.key = key
        self.anchors = list(anchors)
        self.device = device

    def __call__(self, input: TensorDict) -> TensorDict:
        if torch.are_deterministic_algorithms_enabled():
            return self.alternatives[0](input)
        record = self._record()
        if record.choice is not None:
            return self.alternatives[record.choice](input)
        index = min(range(len(self.alternatives)), key=lambda i: len(record.timings[i]))
        clock = self._clock()
        self._synchronize()
        start = clock()
        output = self.alternatives[index](input)
        self._synchronize()
        record.timings[index].append(clock() - start)
        if all(len(timings) >= _TRIALS for timings in record.timings):
            record.choice = _choose(record.timings)
        return output

    def _record(self) -> _Record:
        record = _RECORDS.get(self.key)
        if record is None or not record.is_for(self.anchors):
            record = _Record(len(self.alternatives), self.anchors)
            _RECORDS[self.key] = record
            if len(_RECORDS) > _MAX_RECORDS:
                _RECORDS.popitem(last=False)
        else:
            _RECORDS.move_to_end(self.key)
        return record

    def _clock(self) -> Callable[[], float]:
        # On one CPU thread, the process's CPU time is the time of the work without the other
        # processes' load, which on a shared machine can make wall-clock timings random. Elsewhere,
        # the work is spread over threads or runs on an accelerator: wall-clock time.
        if self.device.type == "cpu" and torch.get_num_threads() == 1:
            return time.process_time
        return time.perf_counter

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def check_keys(self, input_keys: Set[Tensor]) -> set[Tensor]:
        output_keys = [alternative.check_keys(input_keys) for alternative in self.alternatives]
        if any(keys != output_keys[0] for keys in output_keys[1:]):
            raise RequirementError(f"The alternatives of {self} do not produce the same keys.")
        return output_keys[0]

    def __str__(self) -> str:
        return f"Fastest({', '.join(str(alternative) for alternative in self.alternatives)})"


def _choose(timings: list[list[float]]) -> int:
    best = [min(samples[1:]) for samples in timings]  # The first sample is the warm-up.
    fastest = min(range(len(best)), key=lambda i: best[i])
    return fastest if best[fastest] < _MARGIN * best[0] else 0


def forget_timings() -> None:
    """Forgets every measurement and choice (for tests)."""

    _RECORDS.clear()
