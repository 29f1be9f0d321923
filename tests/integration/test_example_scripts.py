"""The example scripts run from start to end (each is also what the README or docs point to)."""

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[2] / "examples"


def _run(script: str, *arguments: str) -> None:
    old_argv = sys.argv
    sys.argv = [str(EXAMPLES / script), *arguments]
    try:
        runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    finally:
        sys.argv = old_argv


def test_basic_jacobian_prints_a_symmetric_gramian(capsys):
    _run("basic_jacobian.py")
    assert "Gramian" in capsys.readouterr().out


def test_trajectories_saves_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="examples/trajectories.py needs the `plot` extra")
    output = tmp_path / "trajectories.png"
    _run("trajectories.py", "--steps", "3", "--output", str(output))
    assert output.read_bytes().startswith(b"\x89PNG")
