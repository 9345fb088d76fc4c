"""Parameter types through real rcl / rclpy: the parameter files robot-rl-launch writes (the files
launch_ros writes: ``yaml.dump`` of the typed values) are read back by rclpy with the type each node
declares, for every launch file; and a node started by ``robot-rl-launch`` gets literal and
substituted values typed as launch_ros types them (a quoted "4" stays the string '4')."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robot_rl.cli.launch import parse_launch_file, write_params_files
from tests.contract.test_launch_files import LAUNCH_FILES, REQUIRED, _declared, _scripts, _type_problem

pytestmark = pytest.mark.ros
rclpy = pytest.importorskip("rclpy", reason="rclpy not installed (pip install 'robot-rl[ros]')")


def _read_back(nodes, files) -> dict[str, dict]:
    """What rclpy's declare_parameter (dynamic typing, no default) gives each node for its file."""
    from rcl_interfaces.msg import ParameterDescriptor

    out: dict[str, dict] = {}
    for node_spec, file in zip(nodes, files):
        if file is None:
            continue
        ctx = rclpy.Context()
        rclpy.init(args=["x", "--ros-args", "--params-file", str(file)], context=ctx)
        try:
            node = rclpy.create_node(node_spec.name, context=ctx)
            desc = ParameterDescriptor(dynamic_typing=True)
            out[node_spec.name] = {k: node.declare_parameter(k, None, desc).value for k in node_spec.params}
            node.destroy_node()
        finally:
            rclpy.shutdown(context=ctx)
    return out


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "array" else value


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_rclpy_reads_every_launch_parameter_with_its_declared_type(path, monkeypatch, tmp_path):
    scripts = _scripts()
    for name in scripts:  # the parser resolves executables on PATH: fake them
        exe = tmp_path / name
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    text = path.read_text()
    nodes = parse_launch_file(path, {k: v for k, v in REQUIRED.items() if f"name: {k}}}" in text})
    read = _read_back(nodes, write_params_files(nodes, tmp_path))
    problems = []
    for node in nodes:
        declared = _declared(scripts[node.exec].split(":")[0])
        for key, sent in node.params.items():
            got = _plain(read[node.name][key])
            if got is None and sent == []:  # an empty list is "not set": declare() keeps the default
                continue
            if got != sent or type(got) is not type(sent):
                problems.append(f"{node.name}.{key}: sent {sent!r}, rclpy read {got!r}")
            elif why := _type_problem(got, *declared[key]):
                problems.append(f"{node.name}.{key} = {why}")
    assert not problems, "; ".join(problems)


FAKE_NODE = """
import json, sys
import rclpy
from rcl_interfaces.msg import ParameterDescriptor
rclpy.init(args=sys.argv)
node = rclpy.create_node("typed_probe")
desc = ParameterDescriptor(dynamic_typing=True)
names = {names!r}
values = {{}}
for n in names:
    v = node.declare_parameter(n, None, desc).value
    v = list(v) if v is not None and not isinstance(v, (str, int, float, bool)) else v
    values[n] = [type(v).__name__, v]
open({out!r}, "w").write(json.dumps(values))
"""

LAUNCH = """
launch:
  - arg: {name: n, default: "4"}
  - arg: {name: lst, default: "[0.25, -0.35]"}
  - arg: {name: empty, default: ""}
  - arg: {name: flag, default: "false"}
  - node:
      pkg: robot_rl
      exec: typed-probe
      name: typed_probe
      on_exit: shutdown
      param:
        - {name: quoted_int, value: "4"}
        - {name: int, value: 4}
        - {name: double, value: 4.0}
        - {name: quoted_list, value: "[0, 1, 2]"}
        - {name: int_list, value: [0, 1, 2]}
        - {name: double_list, value: [0.25, -0.35, 0.01]}
        - {name: str_list, value: [a, b]}
        - {name: var_int, value: "$(var n)"}
        - {name: var_list, value: "$(var lst)"}
        - {name: var_empty, value: "$(var empty)"}
        - {name: var_bool, value: "$(var flag)"}
        - {name: var_text, value: "n=$(var n)"}
        - {name: word, value: forward}
"""

EXPECTED = {
    "quoted_int": ["str", "4"],
    "int": ["int", 4],
    "double": ["float", 4.0],
    "quoted_list": ["str", "[0, 1, 2]"],
    "int_list": ["list", [0, 1, 2]],
    "double_list": ["list", [0.25, -0.35, 0.01]],
    "str_list": ["list", ["a", "b"]],
    "var_int": ["int", 7],  # n:=7 on the command line
    "var_list": ["list", [0.25, -0.35]],
    "var_empty": ["str", ""],
    "var_bool": ["bool", False],
    "var_text": ["str", "n=7"],
    "word": ["str", "forward"],
}


def test_a_node_started_by_robot_rl_launch_gets_launch_ros_types(tmp_path, ros_domain):
    out = tmp_path / "values.json"
    exe = tmp_path / "typed-probe"
    exe.write_text(f"#!{sys.executable}\n" + FAKE_NODE.format(names=sorted(EXPECTED), out=str(out)))
    exe.chmod(0o755)
    file = tmp_path / "typed.launch.yaml"
    file.write_text(LAUNCH)
    env = dict(os.environ, PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}", ROS_DOMAIN_ID=str(ros_domain))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    run = subprocess.run(
        [sys.executable, "-m", "robot_rl.cli.launch", str(file), "n:=7"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    got = json.loads(Path(out).read_text())
    assert got == EXPECTED, {k: (got.get(k), v) for k, v in EXPECTED.items() if got.get(k) != v}
