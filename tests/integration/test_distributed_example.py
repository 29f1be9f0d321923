"""
Runs the distributed examples: ``examples/ddp_mtl.py`` as the docs tell users to, with torchrun on 2
CPU processes, and ``examples/fsdp_mtl.py`` in this process as a torchrun job of one rank (its
multi-rank behaviour is what ``test_distributed_fsdp.py`` checks, on 2 and 3 ranks, without paying
for another launch).
"""

import runpy
import socket
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_ddp_example_keeps_replicas_identical() -> None:
    # Port 0 on 127.0.0.1: the OS picks a free local port, so parallel runs cannot clash, and nothing
    # listens beyond this machine.
    rendezvous = ["--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:0", "--nnodes", "1"]
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            *rendezvous,
            "--nproc-per-node",
            "2",
            str(EXAMPLES / "ddp_mtl.py"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "The 2 ranks hold identical parameters." in completed.stdout


def free_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_fsdp_example_runs_as_one_rank(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    # The environment that torchrun gives its only process.
    environment = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"}
    environment |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_local_port())}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    runpy.run_path(str(EXAMPLES / "fsdp_mtl.py"), run_name="__main__")
    assert "The 1 ranks hold identical parameters." in capsys.readouterr().out
