"""
Runs a function on several CPU processes joined by a gloo process group, for the tests of
:mod:`torchjd.distributed`.

The processes rendezvous through a ``file://`` store in a fresh temporary directory, so that no
port is opened and concurrent test runs cannot clash. Every collective and the whole run are bounded
by timeouts, so that a rank that fails or deadlocks makes the test fail instead of hanging CI. What
each rank returns (any ``torch.save``-able object) comes back to the caller in rank order.
"""

import os
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

COLLECTIVE_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 120.0


def run_on_ranks(
    function: Callable[[int, int], Any], world_size: int = 2, timeout_s: float = RUN_TIMEOUT_S
) -> list[Any]:
    """
    Returns ``[function(rank, world_size) for rank in range(world_size)]``, each call made in its own
    process inside an initialized gloo process group. ``function`` must be defined at the top level
    of an importable module (the processes are spawned, not forked).
    """

    with tempfile.TemporaryDirectory(prefix="torchjd-dist-") as directory:
        init_file = os.path.join(directory, "rendezvous")
        context = mp.start_processes(
            _worker,
            args=(function, world_size, init_file, directory),
            nprocs=world_size,
            join=False,
            start_method="spawn",
        )
        deadline = time.monotonic() + timeout_s
        try:
            # join() returns True once every process exited cleanly, raises as soon as one failed
            # (with its traceback), and returns False while some still run.
            while not context.join(timeout=1.0):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"The {world_size} ranks did not finish within {timeout_s} s.")
        finally:
            for process in context.processes:
                if process.is_alive():
                    process.terminate()
                    process.join(5.0)
                    if process.is_alive():
                        process.kill()
                        process.join()
        return [torch.load(_result_path(directory, rank), weights_only=False) for rank in range(world_size)]


def _result_path(directory: str, rank: int) -> str:
    return os.path.join(directory, f"rank{rank}.pt")


def _worker(
    rank: int, function: Callable[[int, int], Any], world_size: int, init_file: str, directory: str
) -> None:
    # One intra-op thread per rank: the ranks share the machine's cores, and oversubscription makes
    # the run slow and its timing erratic.
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S),
    )
    try:
        result = function(rank, world_size)
        torch.save(result, _result_path(directory, rank))
        # Tearing gloo down while a peer still talks to it can abort a rank: leave together.
        dist.barrier()
    finally:
        dist.destroy_process_group()
