"""Every launch file in launch/ parses, starts only our console scripts, and sets only parameters
the node declares (a typo in a launch file would otherwise be ignored by rclpy), each with a value of
the declared type once typed as ``ros2 launch`` types it (launch_ros's rules, reproduced by
``robot_rl.cli.launch.param_value``: a quoted "4" is a string and makes the node exit at startup)."""

from __future__ import annotations

import ast
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


def _declared(module: str) -> dict[str, tuple[type, bool]]:
    """name -> (kind, array) of every node_utils.declare(self, "<name>", kind, default, desc[, array])
    call in a node module."""
    rel = module.removeprefix("robot_rl.").replace(".", "/")
    tree = ast.parse((ROOT / f"{rel}.py").read_text())
    kinds = {"bool": bool, "int": int, "float": float, "str": str}
    out = {}
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "declare"):
            continue
        name, kind = call.args[1], call.args[2]
        array = (
            call.args[5]
            if len(call.args) > 5
            else next((k.value for k in call.keywords if k.arg == "array"), ast.Constant(False))
        )
        assert isinstance(name, ast.Constant) and isinstance(array, ast.Constant), ast.dump(call)
        out[name.value] = (kinds[kind.id], bool(array.value))
    assert out, f"no declare(self, ...) found in {rel}.py"
    return out


def _type_problem(value, kind: type, array: bool) -> str | None:
    """Why node_utils.declare() would refuse ``value`` (what rclpy reads back from the parameter file
    launch_ros writes for it) for a parameter of ``kind`` / ``array``; None if it takes it."""

    def ok(v) -> bool:
        if kind is float:  # integers are accepted where doubles are declared
            return isinstance(v, (int, float)) and not isinstance(v, bool)
        if kind is int:
            return isinstance(v, int) and not isinstance(v, bool)
        return isinstance(v, kind)

    want = f"{kind.__name__}{' list' if array else ''}"
    if array:
        if not isinstance(value, list) or not all(ok(v) for v in value):
            return f"{value!r} ({type(value).__name__}), declared {want}"
    elif not ok(value):
        return f"{value!r} ({type(value).__name__}), declared {want}"
    return None


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
    problems = []
    for node in nodes:
        assert node.exec in scripts, f"{path.name}: {node.exec} is not a console script of robot-rl"
        declared = _declared(scripts[node.exec].split(":")[0])
        unknown = set(node.params) - set(declared) - ROS_BUILTIN
        assert not unknown, f"{path.name}: {node.name} does not declare {sorted(unknown)}"
        for key, value in node.params.items():
            if key in declared and (why := _type_problem(value, *declared[key])):
                problems.append(f"{node.name}.{key} = {why}")
        cmd = node.command(tmp_path / "params.yaml")
        assert cmd[0] == shutil.which(node.exec) and "--ros-args" in cmd
    assert not problems, f"{path.name} under ros2 launch: " + "; ".join(problems)
