"""Peak memory of a call, shared by the benchmark scripts."""

from collections.abc import Callable

import torch


def peak_memory_mib(function: Callable[[], object]) -> float:
    """
    Returns the peak of the memory that torch allocated during ``function()``, in MiB.

    torch's CPU allocator is invisible to tracemalloc, so this replays the profiler's memory
    events (allocations positive, frees negative) in time order and keeps the highest running sum.
    """

    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        function()
    current = peak = 0
    events = sorted(
        (e for e in prof.events() if getattr(e, "cpu_memory_usage", 0) != 0),
        key=lambda e: e.time_range.start,
    )
    for event in events:
        current += event.cpu_memory_usage
        peak = max(peak, current)
    return peak / 2**20
