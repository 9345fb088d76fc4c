"""robot-rl-launch: parsing ROS 2 YAML launch files and supervising node processes."""

import os
import stat
import subprocess
import sys
import time

import pytest

from robot_rl.cli.launch import LaunchError, parse_launch_file, run_nodes

pytestmark = pytest.mark.unit


def _exe(folder, name, body):
    path = folder / name
    path.write_text(f"#!{sys.executable}\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


LAUNCH = """
launch:
  - arg: {name: rate, default: "20"}
  - node:
      pkg: robot_rl
      exec: fake-node
      name: robot_rl_policy
      param: [{name: control_hz, value: "$(var rate)"}]
      remap: [{from: "~/action", to: "/robot_rl/action"}]
"""


def test_parse_substitutes_args_and_builds_ros_args(tmp_path, monkeypatch):
    _exe(tmp_path, "fake-node", "")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    file = tmp_path / "x.launch.yaml"
    file.write_text(LAUNCH)
    (node,) = parse_launch_file(file, {"rate": "50"})
    assert node.command()[1:] == [
        "--ros-args",
        "-r",
        "__node:=robot_rl_policy",
        "-p",
        "control_hz:=50",
        "-r",
        "~/action:=/robot_rl/action",
    ]
    with pytest.raises(LaunchError, match=r"unknown launch arguments \['nope'\]"):
        parse_launch_file(file, {"nope": "1"})
    file.write_text(LAUNCH.replace("fake-node", "missing-node"))
    with pytest.raises(LaunchError, match="'missing-node' of node 'robot_rl_policy' is not on PATH"):
        parse_launch_file(file)[0].command()


def test_required_node_exit_stops_the_others(tmp_path, monkeypatch):
    marker = tmp_path / "stopped"
    _exe(tmp_path, "short-node", "import time; time.sleep(0.3)")
    _exe(
        tmp_path,
        "long-node",
        f"import signal, sys, time\n"
        f"def bye(*_):\n    open({str(marker)!r}, 'w').write('sigint'); sys.exit(0)\n"
        f"signal.signal(signal.SIGINT, bye)\nwhile True: time.sleep(0.05)",
    )
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    file = tmp_path / "y.launch.yaml"
    file.write_text(
        "launch:\n  - node: {pkg: p, exec: long-node}\n"
        "  - node: {pkg: p, exec: short-node, on_exit: shutdown}\n"
    )
    t0 = time.monotonic()
    assert run_nodes(parse_launch_file(file)) == 0
    assert time.monotonic() - t0 < 10 and marker.read_text() == "sigint"


def test_cli_bad_file_is_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "robot_rl.cli.launch", str(tmp_path / "none.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        out.returncode == 2
        and out.stderr.strip() == f"error: launch file {tmp_path / 'none.yaml'} does not exist"
    )
