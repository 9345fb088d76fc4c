"""``robot-rl-launch --ament-prefix DIR``: the layout ``ros2 launch robot_rl <file>`` resolves on a ROS 2
machine — checked with ament_index_python (the lookup launch_ros uses) in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ament_index_python", reason="ament_index_python comes with the ros extra")
ROOT = Path(__file__).resolve().parents[2]


def test_ament_prefix_resolves_every_launch_node(tmp_path):
    import yaml

    out = subprocess.run(
        [sys.executable, "-m", "robot_rl.cli.launch", "--ament-prefix", str(tmp_path / "ament")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"export AMENT_PREFIX_PATH={tmp_path / 'ament'}:$AMENT_PREFIX_PATH"
    probe = (
        "from ament_index_python.packages import get_package_prefix, get_package_share_directory;"
        "print(get_package_prefix('robot_rl')); print(get_package_share_directory('robot_rl'))"
    )
    env = dict(os.environ, AMENT_PREFIX_PATH=str(tmp_path / "ament"))
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert found.returncode == 0, found.stderr
    prefix, share = (Path(line) for line in found.stdout.split())
    assert (share / "package.xml").read_text().count("<name>robot_rl</name>") == 1
    # every node of every launch file: <prefix>/lib/robot_rl/<exec>, executable, and it runs
    for launch in sorted(ROOT.glob("launch/*.launch.yaml")):
        assert (share / "launch" / launch.name).read_text() == launch.read_text()
        for item in yaml.safe_load(launch.read_text())["launch"]:
            if "node" in item:
                node = item["node"]
                assert node["pkg"] == "robot_rl", launch.name
                exe = prefix / "lib" / "robot_rl" / node["exec"]
                assert exe.exists() and os.access(exe, os.X_OK), (launch.name, node["exec"])
    helped = subprocess.run(
        [str(prefix / "lib/robot_rl/robot-rl-command-mux"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert helped.returncode == 0 and "usage" in helped.stdout
