"""robot-rl-launch: parsing ROS 2 YAML launch files and supervising node processes."""

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robot_rl.cli.launch import LaunchError, load_launch_file, param_value, parse_launch_file, run_nodes

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
    import yaml

    _exe(tmp_path, "fake-node", "")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    file = tmp_path / "x.launch.yaml"
    file.write_text(LAUNCH)
    (node,) = parse_launch_file(file, {"rate": "50"})
    assert node.params == {"control_hz": 50}
    assert node.command(tmp_path / "p.yaml")[1:] == [
        "--ros-args",
        "-r",
        "__node:=robot_rl_policy",
        "--params-file",
        str(tmp_path / "p.yaml"),
        "-r",
        "~/action:=/robot_rl/action",
    ]
    # the parameter file launch_ros writes: keyed by the node's full name, typed values
    assert yaml.safe_load(node.params_yaml()) == {"/robot_rl_policy": {"ros__parameters": {"control_hz": 50}}}
    with pytest.raises(LaunchError, match=r"unknown launch arguments \['nope'\]"):
        parse_launch_file(file, {"nope": "1"})
    file.write_text(LAUNCH.replace("fake-node", "missing-node"))
    with pytest.raises(LaunchError, match="'missing-node' of node 'robot_rl_policy' is not on PATH"):
        parse_launch_file(file)[0].command(tmp_path / "p.yaml")


ARGS = {"i": "4", "f": "4.0", "b": "true", "li": "[0, 1, 2]", "lf": "[0.25, -0.35]", "ls": "[a, b]"}
ARGS |= {"empty": "", "s": "abc", "qs": "'4'", "el": "[]", "mixed": "[1, 2.5]", "null": "~", "map": "{a: 1}"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # literal YAML values keep their YAML type; a quoted literal is a string, whatever it looks like
        (4, 4),
        (4.0, 4.0),
        (True, True),
        ("4", "4"),
        ("[0, 1, 2]", "[0, 1, 2]"),
        ("", ""),
        ("forward", "forward"),
        ([0, 1, 2], [0, 1, 2]),
        ([0.25, -0.35, 0.01], [0.25, -0.35, 0.01]),
        (["a", "b"], ["a", "b"]),
        ([], []),
        (r"\$(var i)", "$(var i)"),  # an escaped $ is literal text
        # a value with a substitution is read as YAML once substituted
        ("$(var i)", 4),
        ("$(var f)", 4.0),
        ("$(var b)", True),
        ("$(var li)", [0, 1, 2]),
        ("$(var lf)", [0.25, -0.35]),
        ("$(var ls)", ["a", "b"]),
        ("$(var el)", []),
        ("$(var empty)", ""),
        ("$(var s)", "abc"),
        ("$(var qs)", "4"),
        ("$(var i)$(var i)", 44),
        ("x_$(var i)", "x_4"),
        (["$(var i)", 5], [4, 5]),
        (["$(var s)", "d"], ["abc", "d"]),
    ],
)
def test_parameter_values_are_typed_as_launch_ros_types_them(raw, expected):
    value = param_value(raw, ARGS)
    assert value == expected and type(value) is type(expected), (raw, value)
    if isinstance(value, list):
        assert [type(v) for v in value] == [type(v) for v in expected]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([1, 2.5], "not a uniform list"),  # literal items of two types (parse_if_substitutions)
        ([1, "a"], "not a uniform list"),
        (["$(var s)", 5], "not a uniform list"),  # ['abc', 5] after substitution
        ("$(var mixed)", "not a scalar or a uniform list"),  # yaml [1, 2.5]: is_instance_of_valid_type
        ("$(var null)", "not a scalar or a uniform list"),
        ("$(var map)", "not a scalar or a uniform list"),
        ({"a": 1}, "not a scalar or a list"),
        (None, "not a scalar or a list"),
        ([[1]], "not a scalar"),
        ("$(var nope)", "undefined launch argument 'nope'"),
        ("$(env HOME)", "unsupported substitution"),
        ("$(var b", "cannot parse"),
    ],
)
def test_parameter_values_launch_ros_refuses_are_errors(raw, message):
    with pytest.raises(LaunchError, match=re.escape(message)):
        param_value(raw, ARGS)


def test_launch_file_attributes_and_stop_timeouts(tmp_path):
    file = tmp_path / "z.launch.yaml"
    file.write_text("launch:\n  - arg: {name: n, default: 4}\n")
    with pytest.raises(LaunchError, match="'default' must be a string"):  # launch_yaml: defaults are text
        parse_launch_file(file)
    file.write_text(
        "launch:\n  - arg: {name: n, default: '4'}\n"
        "  - node: {pkg: p, exec: x, param: [{name: a, value: '$(var n)'}]}\n"
    )
    plan = load_launch_file(file, {"sigterm_timeout": "2", "n": "7"})
    assert (plan.sigterm_timeout, plan.sigkill_timeout) == (2.0, 5.0)  # ros2 launch's defaults: 5 s each
    assert plan.nodes[0].params == {"a": 7}
    assert yaml_key(plan.nodes[0]) == "/**"  # no node name: every node of the process
    with pytest.raises(LaunchError, match="sigkill_timeout must be"):
        load_launch_file(file, {"sigkill_timeout": "soon"})


def yaml_key(node):
    import yaml

    return next(iter(yaml.safe_load(node.params_yaml())))


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


# a node that records the signals it gets, "tears down" for 0.5 s (a second SIGINT would come then)
# and writes them to <out>; `setup` runs first (e.g. ignore a signal)
SIGNAL_NODE = """
import signal, sys, time
got = []
signal.signal(signal.SIGINT, lambda s, f: got.append(s))
signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
{setup}
open({out!r} + ".ready", "w").close()
while not got:
    time.sleep(0.01)
time.sleep(0.5)
open({out!r}, "w").write(" ".join(signal.Signals(s).name for s in got))
"""


def _signal_graph(tmp_path, setups, args=()):
    """robot-rl-launch in its own session running one SIGNAL_NODE per setup; (process, outs, log)."""
    outs, nodes = [], []
    for i, setup in enumerate(setups):
        out = tmp_path / f"node{i}.out"
        _exe(tmp_path, f"sig-node-{i}", SIGNAL_NODE.format(out=str(out), setup=setup))
        outs.append(out)
        nodes.append(f"  - node: {{pkg: p, exec: sig-node-{i}, name: n{i}}}\n")
    file = tmp_path / "sig.launch.yaml"
    file.write_text("launch:\n" + "".join(nodes))
    log = tmp_path / "launch.log"
    env = dict(os.environ, PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "robot_rl.cli.launch", str(file), *args],
        env=env,
        stdout=open(log, "w"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    t_end = time.monotonic() + 30
    while not all(Path(f"{o}.ready").exists() for o in outs):
        assert time.monotonic() < t_end and proc.poll() is None, log.read_text()
        time.sleep(0.02)
    return proc, outs, log


@pytest.mark.parametrize(
    ("sig", "group", "message"),
    [
        (signal.SIGINT, True, "SIGINT reached every process of the group"),  # a terminal's Ctrl-C
        (signal.SIGINT, False, "SIGINT: stopping all"),
        (signal.SIGTERM, False, "SIGTERM: stopping all"),
        (signal.SIGTERM, True, "SIGTERM reached every process of the group"),
    ],
    ids=["sigint-group", "sigint-launcher", "sigterm-launcher", "sigterm-group"],
)
def test_each_node_gets_one_stop_signal(tmp_path, sig, group, message):
    """As ros2 launch: no second SIGINT when the signal reached the group; forwarded when it did not."""
    proc, outs, log = _signal_graph(tmp_path, ["", ""])
    (os.killpg if group else os.kill)(proc.pid, sig)
    assert proc.wait(timeout=30) == 0
    expected = sig.name if group else "SIGINT"
    assert [o.read_text() for o in outs] == [expected, expected], log.read_text()
    assert message in log.read_text()


def test_stop_escalates_to_sigterm_then_sigkill(tmp_path):
    ignore_int = "signal.signal(signal.SIGINT, signal.SIG_IGN)"
    term_kills = ignore_int + "\nsignal.signal(signal.SIGTERM, signal.SIG_DFL)"
    ignore_both = ignore_int + "\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)"
    proc, outs, log = _signal_graph(
        tmp_path, ["", term_kills, ignore_both], ["sigterm_timeout:=1.5", "sigkill_timeout:=0.5"]
    )
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert 2.0 <= time.monotonic() - t0 < 6.0
    text = log.read_text()
    assert outs[0].read_text() == "SIGINT" and not outs[1].exists() and not outs[2].exists(), text
    assert "still running 1.5 s after the last signal: n1, n2; sending SIGTERM" in text
    assert "still running 0.5 s after the last signal: n2; sending SIGKILL" in text


def test_nodes_stop_when_the_launcher_is_killed(tmp_path):
    proc, outs, log = _signal_graph(tmp_path, ["", ""])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t_end = time.monotonic() + 10
    while not all(o.exists() for o in outs) and time.monotonic() < t_end:
        time.sleep(0.02)
    # the parent-death signal: each node stops as on Ctrl-C and runs its teardown
    assert [o.read_text() for o in outs] == ["SIGINT", "SIGINT"], log.read_text()
