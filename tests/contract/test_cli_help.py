"""Every console script answers --help and exits 0."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("robot-rl-train", "robot-rl-train: the main job"),
        ("robot-rl-eval", "robot-rl-eval: evaluate a policy bundle"),
        ("robot-rl-collect", "robot-rl-collect: record scripted-expert demonstrations"),
        ("robot-rl-bench", "usage: robot-rl-bench <benchmark>"),
        ("robot-rl-launch", "usage: robot-rl-launch"),
        ("robot-rl-reward-train", "usage: robot-rl-reward-train"),
        ("robot-rl-bag", "usage: robot-rl-bag"),
    ],
)
def test_help(script, expected):
    # the console scripts live beside the interpreter (the venv's bin/), which need not be on PATH
    path = shutil.which(script, path=str(Path(sys.executable).parent)) or shutil.which(script)
    assert path, f"{script} is not installed (pip install -e .)"
    out = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert expected in out.stdout
