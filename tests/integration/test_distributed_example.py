"""Runs ``examples/ddp_mtl.py`` as the docs tell users to, with torchrun on 2 CPU processes."""

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ddp_mtl.py"


def test_ddp_example_keeps_replicas_identical() -> None:
    # Port 0 on 127.0.0.1: the OS picks a free local port, so parallel runs cannot clash, and nothing
    # listens beyond this machine.
    rendezvous = ["--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:0", "--nnodes", "1"]
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", *rendezvous, "--nproc-per-node", "2", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "The 2 ranks hold identical parameters." in completed.stdout
