"""``robot-rl-launch <file.launch.yaml> [name:=value ...]``: run a ROS 2 YAML launch file where only
the PyPI rclpy wheels are installed (no ``ros2`` CLI, no ``launch`` package).

The same files run with ``ros2 launch`` on a ROS 2 machine. Supported subset of the ROS 2 YAML launch
format::

    launch:
      - arg: {name: bundle, default: "outputs/bundle"}
      - node:
          pkg: robot_rl
          exec: robot-rl-policy-node          # an executable on PATH (console script)
          name: robot_rl_policy
          namespace: ""
          on_exit: shutdown                   # optional: stop everything when this node exits
          param:
            - {name: bundle, value: "$(var bundle)"}
          remap:
            - {from: "~/action", to: "/robot_rl/action"}

Each node becomes a process ``<exec> --ros-args -r __node:=<name> -p <k>:=<v> -r <from>:=<to>``.
Ctrl-C (SIGINT) or SIGTERM stops every process (SIGINT, then SIGTERM, then SIGKILL after grace
periods); a node with ``on_exit: shutdown`` that exits stops the rest.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_VAR = re.compile(r"\$\(var ([A-Za-z_][A-Za-z0-9_]*)\)")


class LaunchError(ValueError):
    pass


@dataclass
class NodeSpec:
    exec: str
    name: str = ""
    namespace: str = ""
    params: dict[str, str] = field(default_factory=dict)
    remaps: list[tuple[str, str]] = field(default_factory=list)
    shutdown_on_exit: bool = False

    def command(self) -> list[str]:
        path = shutil.which(self.exec)
        if path is None:
            raise LaunchError(f"executable {self.exec!r} of node {self.name or self.exec!r} is not on PATH")
        cmd = [path, "--ros-args"]
        if self.name:
            cmd += ["-r", f"__node:={self.name}"]
        if self.namespace:
            cmd += ["-r", f"__ns:={self.namespace}"]
        for key, value in self.params.items():
            # an empty value is the empty string (as in ros2 launch); bare `key:=` does not parse in rcl
            cmd += ["-p", f"{key}:={value if value != '' else repr('')}"]
        for src, dst in self.remaps:
            cmd += ["-r", f"{src}:={dst}"]
        return cmd


def _substitute(value: Any, args: dict[str, str], where: str) -> str:
    def repl(match: re.Match) -> str:
        if match.group(1) not in args:
            raise LaunchError(f"{where}: undefined launch argument {match.group(1)!r}")
        return args[match.group(1)]

    return _VAR.sub(repl, str(value))


def parse_launch_file(path: str | Path, overrides: dict[str, str] | None = None) -> list[NodeSpec]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise LaunchError(f"launch file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise LaunchError(f"{path}: invalid YAML: {str(err).splitlines()[0]}") from err
    if not isinstance(data, dict) or not isinstance(data.get("launch"), list):
        raise LaunchError(f"{path}: expected a top-level 'launch:' list")
    args: dict[str, str] = {}
    overrides = dict(overrides or {})
    nodes = []
    for i, entry in enumerate(data["launch"]):
        where = f"{path}: launch[{i}]"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise LaunchError(f"{where}: each entry is one of 'arg:' or 'node:'")
        kind, body = next(iter(entry.items()))
        if kind == "arg":
            name = body["name"]
            if name in overrides:
                args[name] = overrides.pop(name)
            elif "default" in body:
                args[name] = _substitute(body["default"], args, where)
            else:
                raise LaunchError(f"{where}: launch argument {name!r} has no default; pass {name}:=<value>")
        elif kind == "node":
            if "exec" not in body:
                raise LaunchError(f"{where}: node needs 'exec'")
            params = {str(p["name"]): _substitute(p["value"], args, where) for p in body.get("param", [])}
            remaps = [
                (_substitute(r["from"], args, where), _substitute(r["to"], args, where))
                for r in body.get("remap", [])
            ]
            nodes.append(
                NodeSpec(
                    body["exec"],
                    body.get("name", ""),
                    body.get("namespace", ""),
                    params,
                    remaps,
                    body.get("on_exit") == "shutdown",
                )
            )
        else:
            raise LaunchError(f"{where}: unsupported entry {kind!r} (supported: arg, node)")
    if overrides:
        raise LaunchError(f"{path}: unknown launch arguments {sorted(overrides)}; declared: {sorted(args)}")
    return nodes


def _stop(procs: list[subprocess.Popen], grace_s: float = 5.0) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in procs if p.poll() is None]
        if not alive:
            return
        for p in alive:
            p.send_signal(sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(p.poll() is None for p in alive):
            time.sleep(0.05)


def run_nodes(nodes: list[NodeSpec], poll_s: float = 0.05) -> int:
    """Start every node, supervise, stop all; returns the exit status of the launch."""
    commands = [n.command() for n in nodes]  # fail before starting anything
    procs: list[subprocess.Popen] = []
    stop_requested = False

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stop_requested
        stop_requested = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        for node, cmd in zip(nodes, commands):
            print(f"[robot-rl-launch] starting {node.name or node.exec}: {' '.join(cmd)}", flush=True)
            procs.append(subprocess.Popen(cmd, env=os.environ.copy()))
        while not stop_requested:
            if all(p.poll() is not None for p in procs):
                break
            for node, p in zip(nodes, procs):
                code = p.poll()
                if code is not None and node.shutdown_on_exit:
                    print(
                        f"[robot-rl-launch] {node.name or node.exec} exited ({code}); stopping all",
                        flush=True,
                    )
                    status = code or 0
                    stop_requested = True
            time.sleep(poll_s)
    finally:
        _stop(procs)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return status


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="robot-rl-launch",
        description="Run a ROS 2 YAML launch file from launch/ without the ros2 CLI.",
        epilog="example: robot-rl-launch launch/sim_in_the_loop.launch.yaml bundle:=outputs/run/bundle",
    )
    parser.add_argument("file", nargs="?", help="a *.launch.yaml file")
    parser.add_argument("args", nargs="*", help="launch arguments as name:=value")
    parser.add_argument("--print", action="store_true", help="print the node commands and exit")
    parser.add_argument(
        "--ament-prefix",
        metavar="DIR",
        help="write an ament prefix for `ros2 launch robot_rl <file>` on a ROS 2 machine, then exit",
    )
    ns = parser.parse_args(argv)
    if ns.ament_prefix:
        from robot_rl.cli.ament import write_ament_prefix

        prefix = write_ament_prefix(ns.ament_prefix)
        print(f"export AMENT_PREFIX_PATH={prefix}:$AMENT_PREFIX_PATH")
        sys.exit(0)
    if not ns.file:
        parser.error("a launch file is required (or --ament-prefix DIR)")
    try:
        overrides = {}
        for item in ns.args:
            if ":=" not in item:
                raise LaunchError(f"launch arguments are name:=value, got {item!r}")
            key, value = item.split(":=", 1)
            overrides[key] = value
        nodes = parse_launch_file(ns.file, overrides)
        if ns.print:
            for node in nodes:
                print(" ".join(node.command()))
            sys.exit(0)
        sys.exit(run_nodes(nodes))
    except LaunchError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
