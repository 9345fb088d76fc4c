"""Every console script answers --help and exits 0."""

import shutil
import subprocess

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
    ],
)
def test_help(script, expected):
    path = shutil.which(script)
    assert path, f"{script} is not installed (pip install -e .)"
    out = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert expected in out.stdout
