"""Every launch file in launch/ parses, starts only our console scripts, and sets only parameters
the node declares (a typo in a launch file would otherwise be ignored by rclpy)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import tomllib

from robot_rl.cli.launch import parse_launch_file

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.yaml"))
REQUIRED = {"bundle": "/tmp/bundle", "store": "/tmp/store"}  # launch arguments without a default
ROS_BUILTIN = {"use_sim_time"}


def _scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def _declared(module: str) -> set[str]:
    """Parameter names a node module declares through node_utils.declare(self, "<name>", ...)."""
    rel = module.removeprefix("robot_rl.").replace(".", "/")
    names = set(re.findall(r'declare\(\s*self,\s*"([a-z_]+)"', (ROOT / f"{rel}.py").read_text()))
    assert names, f"no declare(self, ...) found in {rel}.py"
    return names


def test_there_are_launch_files_for_each_use():
    names = {p.name for p in LAUNCH_FILES}
    assert {"sim_in_the_loop.launch.yaml", "record_sim.launch.yaml", "real_robot.launch.yaml"} <= names
    assert {"record_only.launch.yaml", "teleop_session.launch.yaml"} <= names


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_nodes_and_parameters_exist(path, monkeypatch, tmp_path):
    scripts = _scripts()
    # the parser only reads the file; command() needs the executables on PATH: fake them
    for name in scripts:
        exe = tmp_path / name
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    text = path.read_text()
    required = {k: v for k, v in REQUIRED.items() if f"name: {k}}}" in text}
    nodes = parse_launch_file(path, required)
    assert nodes, path
    for node in nodes:
        assert node.exec in scripts, f"{path.name}: {node.exec} is not a console script of robot-rl"
        declared = _declared(scripts[node.exec].split(":")[0]) | ROS_BUILTIN
        unknown = set(node.params) - declared
        assert not unknown, f"{path.name}: {node.name} does not declare {sorted(unknown)}"
        cmd = node.command()
        assert cmd[0] == shutil.which(node.exec) and "--ros-args" in cmd
        assert all(not a.endswith(":=") for a in cmd), cmd  # empty values are passed as ''
