from abc import ABC, abstractmethod


class Stateful(ABC):
    """
    Mixin of the aggregators, weightings and scalarizers that keep state from one call to the next
    (moving averages, step counters, learned weights).

    :meth:`reset` gives the object back the state it had when it was built, e.g. before training on
    a new problem or with another number of objectives.

    >>> from torchjd import Stateful
    >>> class StepCounter(Stateful):
    ...     def __init__(self):
    ...         self.steps = 0
    ...     def reset(self):
    ...         self.steps = 0
    >>> counter = StepCounter()
    >>> counter.steps = 3
    >>> counter.reset()
    >>> counter.steps
    0
    """

    @abstractmethod
    def reset(self) -> None:
        """Gives the object back the state it had when it was built."""
