"""``robot-rl-launch <file.launch.yaml> [name:=value ...]``: run a ROS 2 YAML launch file where only
the PyPI rclpy wheels are installed (no ``ros2`` CLI, no ``launch`` package).

The same files run with ``ros2 launch`` on a ROS 2 machine, and both must hand the nodes the same
parameters. Supported subset of the ROS 2 YAML launch format::

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
            - {name: action_dim, value: 4}    # an integer; "4" would be the string '4'
          remap:
            - {from: "~/action", to: "/robot_rl/action"}

**Parameter types** follow launch_ros (``launch_ros/actions/node.py`` ``parse_nested_parameters``,
``launch_ros/parameter_descriptions.py`` ``ParameterValue``, ``launch/utilities/type_utils.py``
``normalize_typed_substitution`` / ``perform_typed_substitution`` / ``coerce_to_type``,
``launch/frontend/parse_substitution.py`` ``parse_if_substitutions``; Jazzy), see
:func:`param_value`: a YAML value without a substitution keeps its YAML type (a quoted ``"4"`` is the
string ``'4'``); a string with a ``$(var x)`` substitution is substituted, then read as YAML (``4`` →
int, ``[0, 1]`` → a list of int, ``''`` stays the empty string). The typed values go to the node as
launch_ros passes them: a ROS 2 parameter file (``yaml.dump`` of ``{/<name>: {ros__parameters:
...}}``) given with ``--params-file``, which rcl parses; ``--print`` shows each command line and its
parameter file.

Each node becomes a process ``<exec> --ros-args -r __node:=<name> --params-file <file> -r
<from>:=<to>`` in this process's group, started with a parent-death signal (Linux
``PR_SET_PDEATHSIG``: SIGINT): if ``robot-rl-launch`` dies, even by SIGKILL, every node gets a SIGINT
and stops as on Ctrl-C (no node keeps commanding the robot without its supervisor).

**Stopping** matches ``ros2 launch`` (``launch/actions/execute_local.py``, ``launch/launch_service.py``):

- a Ctrl-C in the terminal reaches every process of the foreground group, the nodes included: no
  second SIGINT is sent (a second one during a node's teardown used to cost the recorder its episode
  in progress). Whether a SIGINT or SIGTERM reached the whole group is observed, not assumed: a
  *witness* process in the group blocks both signals, so a group-wide one stays pending there;
- a SIGINT or SIGTERM sent to ``robot-rl-launch`` alone, or a required node (``on_exit: shutdown``)
  exiting, sends SIGINT to every node;
- nodes still running ``sigterm_timeout`` seconds later (5, as ``ros2 launch``) get SIGTERM, and
  SIGKILL ``sigkill_timeout`` (5) seconds after that; both are launch arguments
  (``sigterm_timeout:=10``), as in ``ros2 launch``. Further SIGINTs while stopping are ignored.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ros2 launch's defaults (launch/actions/execute_local.py: LaunchConfiguration('sigterm_timeout',
# default=5), ('sigkill_timeout', default=5)); overridable as launch arguments, as there
SIGTERM_TIMEOUT_S = 5.0
SIGKILL_TIMEOUT_S = 5.0

_SUBST = re.compile(r"\$\(([A-Za-z][A-Za-z0-9_-]*)((?: [^()]*)?)\)")
_ESCAPE = re.compile(r"\\(.)")


class LaunchError(ValueError):
    pass


# --- parameter values, as launch_ros types them -------------------------------------------------


def _resolve(text: str, args: dict[str, str], where: str) -> tuple[str, bool]:
    """Substitute ``$(var name)`` in ``text``; (result, whether it held a substitution).

    As the launch frontend's grammar: text outside substitutions has backslash escapes removed
    (``\\$`` is a literal ``$``); any other substitution (``$(env ...)``, ``$(find-pkg-share ...)``)
    is not supported here and is an error rather than passed on literally.
    """
    out, pos, found = [], 0, False
    while True:
        start = text.find("$(", pos)
        while start > 0 and text[start - 1] == "\\":  # an escaped \$ is a literal $
            start = text.find("$(", start + 2)
        if start < 0:
            out.append(_ESCAPE.sub(r"\1", text[pos:]))
            return "".join(out), found
        match = _SUBST.match(text, start)
        if match is None:
            raise LaunchError(f"{where}: cannot parse the substitution in {text!r}")
        kind, rest = match.group(1), match.group(2).strip()
        if kind != "var" or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rest):
            raise LaunchError(
                f"{where}: unsupported substitution {match.group(0)!r} (robot-rl-launch supports $(var name))"
            )
        if rest not in args:
            raise LaunchError(f"{where}: undefined launch argument {rest!r}")
        out.append(_ESCAPE.sub(r"\1", text[pos:start]))
        out.append(args[rest])
        found = True
        pos = match.end()


def _is_valid_value(value: Any) -> bool:
    """launch's ``is_instance_of_valid_type``: a scalar (int, float, bool, str) or a list whose items
    all have the type of its first non-string item (strings only: str); an empty list is valid."""
    if isinstance(value, list):
        if not value:
            return True
        member = next((type(x) for x in value if type(x) is not str), str)
        return member in (int, float, bool, str) and all(isinstance(x, member) for x in value)
    return isinstance(value, (int, float, bool, str))


def _yaml_rules(text: str, where: str) -> Any:
    """launch's ``coerce_to_type(text, None)``: the empty string stays ''; else ``yaml.safe_load``, which
    must give a valid value (null, a mapping, a date, a mixed list are errors)."""
    import yaml

    if not text:
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise LaunchError(f"{where}: {text!r} is not valid YAML: {str(err).splitlines()[0]}") from err
    if not _is_valid_value(value):
        hint = ""
        if isinstance(value, list) and {type(x) for x in value} == {int, float}:
            hint = " (write every number of a list of doubles with a decimal point: 0.0, not 0)"
        raise LaunchError(f"{where}: {text!r} reads as {value!r}, not a scalar or a uniform list{hint}")
    return value


def param_value(raw: Any, args: dict[str, str], where: str = "parameter") -> Any:
    """The value launch_ros gives a node for a YAML ``param: {name: ..., value: raw}`` (no ``type:``).

    - int, float, bool: as is;
    - a string without a substitution: that string, whatever it looks like (``"4"`` → '4');
    - a string with ``$(var x)``: substituted, then read as YAML (``"4"`` → 4, ``"[0, 1]"`` → [0, 1],
      ``""`` → '', ``"abc"`` → 'abc');
    - a list: its literal items must share one type (``[1, 2.5]`` is an error, ``[1.0, 2.5]`` is not),
      items with a substitution are read as YAML, and the result must be uniform.
    Anything else (a mapping, null, nested lists) is an error, as it is for ``ros2 launch``.
    """
    if isinstance(raw, (bool, int, float)):
        return raw
    if isinstance(raw, str):
        text, substituted = _resolve(raw, args, where)
        return _yaml_rules(text, where) if substituted else text
    if isinstance(raw, list):
        items, literal_types = [], set()
        for x in raw:
            if isinstance(x, str):
                text, substituted = _resolve(x, args, where)
                if substituted:
                    items.append(_yaml_rules(text, where))
                    continue
                items.append(text)
                literal_types.add(str)
            elif isinstance(x, (bool, int, float)):
                items.append(x)
                literal_types.add(type(x))
            else:
                raise LaunchError(f"{where}: list item {x!r} is not a scalar")
        if len(literal_types) > 1 or not _is_valid_value(items):
            raise LaunchError(f"{where}: {raw!r} is not a uniform list (one type: int, float, bool or str)")
        return items
    raise LaunchError(f"{where}: value {raw!r} is not a scalar or a list of scalars")


def _text_attr(body: dict, key: str, where: str, default: str | None = None) -> str | None:
    """A string attribute (launch_yaml's ``get_attr`` with ``data_type=str``: other types are errors)."""
    if key not in body:
        return default
    value = body[key]
    if not isinstance(value, str):
        raise LaunchError(f"{where}: '{key}' must be a string (quote it), got {value!r}")
    return value


# --- nodes ---------------------------------------------------------------------------------------


@dataclass
class NodeSpec:
    exec: str
    name: str = ""
    namespace: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # typed, as launch_ros evaluates them
    remaps: list[tuple[str, str]] = field(default_factory=list)
    shutdown_on_exit: bool = False

    @property
    def label(self) -> str:
        return self.name or self.exec

    def params_yaml(self) -> str:
        """The ROS 2 parameter file launch_ros writes for these parameters (``Node.
        _create_params_file_from_dict``): keyed by the node's full name, or ``/**`` without a name."""
        import yaml

        if self.name:
            key = "/" + "/".join(p for p in (*self.namespace.strip("/").split("/"), self.name) if p)
        else:
            key = "/**"
        return yaml.dump({key: {"ros__parameters": self.params}}, default_flow_style=False)

    def command(self, params_file: str | Path | None = None) -> list[str]:
        path = shutil.which(self.exec)
        if path is None:
            raise LaunchError(f"executable {self.exec!r} of node {self.label!r} is not on PATH")
        cmd = [path, "--ros-args"]
        if self.name:
            cmd += ["-r", f"__node:={self.name}"]
        if self.namespace:
            cmd += ["-r", f"__ns:={self.namespace}"]
        if self.params:
            if params_file is None:
                raise LaunchError(f"node {self.label!r} has parameters: command() needs their file")
            cmd += ["--params-file", str(params_file)]
        for src, dst in self.remaps:
            cmd += ["-r", f"{src}:={dst}"]
        return cmd


@dataclass
class LaunchPlan:
    nodes: list[NodeSpec]
    sigterm_timeout: float = SIGTERM_TIMEOUT_S
    sigkill_timeout: float = SIGKILL_TIMEOUT_S


def _timeout(overrides: dict[str, str], name: str, default: float) -> float:
    if name not in overrides:
        return default
    try:
        value = float(overrides.pop(name))
    except ValueError as err:
        raise LaunchError(f"{name} must be a number of seconds") from err
    if not math.isfinite(value) or value < 0:
        raise LaunchError(f"{name} must be >= 0 seconds")
    return value


def load_launch_file(path: str | Path, overrides: dict[str, str] | None = None) -> LaunchPlan:
    """Parse a launch file with ``name:=value`` overrides (``sigterm_timeout`` / ``sigkill_timeout``
    set the stop timeouts, as with ``ros2 launch``)."""
    overrides = dict(overrides or {})
    sigterm = _timeout(overrides, "sigterm_timeout", SIGTERM_TIMEOUT_S)
    sigkill = _timeout(overrides, "sigkill_timeout", SIGKILL_TIMEOUT_S)
    return LaunchPlan(parse_launch_file(path, overrides), sigterm, sigkill)


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
        if not isinstance(body, dict):
            raise LaunchError(f"{where}: '{kind}:' needs a mapping")
        if kind == "arg":
            name = _text_attr(body, "name", where)
            if not name:
                raise LaunchError(f"{where}: arg needs a name")
            where = f"{where} (arg {name})"
            default = _text_attr(body, "default", where)  # launch_yaml: a default is a string
            if name in overrides:
                args[name] = overrides.pop(name)
            elif default is not None:
                args[name] = _resolve(default, args, where)[0]
            else:
                raise LaunchError(f"{where}: launch argument {name!r} has no default; pass {name}:=<value>")
        elif kind == "node":
            exe = _text_attr(body, "exec", where)
            if not exe:
                raise LaunchError(f"{where}: node needs 'exec'")
            name = _resolve(_text_attr(body, "name", where, ""), args, where)[0]
            namespace = _resolve(_text_attr(body, "namespace", where, ""), args, where)[0]
            where = f"{where} (node {name or exe})"
            params: dict[str, Any] = {}
            for p in body.get("param", []) or []:
                if not isinstance(p, dict) or "name" not in p or "value" not in p:
                    raise LaunchError(f"{where}: each param is {{name: ..., value: ...}}, got {p!r}")
                if set(p) - {"name", "value"}:
                    raise LaunchError(
                        f"{where}: param keys other than name/value: {sorted(set(p) - {'name', 'value'})}"
                    )
                key = _resolve(_text_attr(p, "name", where), args, where)[0]
                params[key] = param_value(p["value"], args, f"{where} param {key}")
            remaps = [
                (
                    _resolve(_text_attr(r, "from", where), args, where)[0],
                    _resolve(_text_attr(r, "to", where), args, where)[0],
                )
                for r in body.get("remap", []) or []
            ]
            nodes.append(NodeSpec(exe, name, namespace, params, remaps, body.get("on_exit") == "shutdown"))
        else:
            raise LaunchError(f"{where}: unsupported entry {kind!r} (supported: arg, node)")
    if overrides:
        raise LaunchError(f"{path}: unknown launch arguments {sorted(overrides)}; declared: {sorted(args)}")
    return nodes


def write_params_files(nodes: list[NodeSpec], folder: str | Path) -> list[Path | None]:
    """One parameter file per node with parameters (None for the others), in ``folder``."""
    out: list[Path | None] = []
    for i, node in enumerate(nodes):
        if not node.params:
            out.append(None)
            continue
        file = Path(folder) / f"{i:02d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', node.label)}.params.yaml"
        file.write_text(node.params_yaml())
        out.append(file)
    return out


# --- processes -----------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


@functools.lru_cache(maxsize=1)
def _prctl() -> Any:
    """libc's ``prctl`` (Linux), looked up before any fork: a child must not dlopen after a fork."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _set_parent_death_signal(sig: int) -> bool:
    """Linux: deliver ``sig`` to this process when its parent dies. False where unsupported."""
    prctl = _prctl()
    return prctl is not None and prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def _child_setup(parent: int):
    """``preexec_fn`` of every node: SIGINT when robot-rl-launch dies (then it stops as on Ctrl-C)."""
    _prctl()

    def setup() -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        _set_parent_death_signal(signal.SIGINT)
        if os.getppid() != parent:  # the launcher died before prctl took effect: do not start
            os._exit(1)

    return setup


class GroupWitness:
    """A process in this process group that blocks SIGINT and SIGTERM, so a group-wide signal (a
    terminal's Ctrl-C, ``kill -INT -<pgid>``) stays pending in it: :meth:`received` tells whether the
    signal robot-rl-launch got also reached its nodes. Linux only (``/proc``); elsewhere it answers
    False and the launcher forwards the signal (the nodes ignore a second SIGINT while stopping)."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self._fd: int | None = None
        if not Path(f"/proc/{os.getpid()}/status").exists():
            return
        _prctl()
        read_fd, write_fd = os.pipe()
        # blocked before the fork: no window in which a signal could reach the witness unblocked
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
            os.close(read_fd)
            os.close(write_fd)
            return
        if pid == 0:  # the witness: exits when the launcher closes the pipe or dies
            try:
                os.close(write_fd)
                _set_parent_death_signal(signal.SIGKILL)
                while os.read(read_fd, 1):
                    pass
            finally:
                os._exit(0)
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        os.close(read_fd)
        self.pid, self._fd = pid, write_fd

    def received(self, sig: int, wait_s: float = 0.05) -> bool:
        if self.pid is None:
            return False
        deadline = time.monotonic() + wait_s
        while True:
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return False
            pending = 0
            for line in status.splitlines():
                if line.startswith(("ShdPnd:", "SigPnd:")):
                    pending |= int(line.split()[1], 16)
            if pending & (1 << (int(sig) - 1)):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    def close(self) -> None:
        if self.pid is None:
            return
        os.close(self._fd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self.pid = None


def _log(message: str) -> None:
    print(f"[robot-rl-launch] {message}", flush=True)


def _stop(
    nodes: list[NodeSpec],
    procs: list[subprocess.Popen],
    send_sigint: bool,
    sigterm_timeout: float = SIGTERM_TIMEOUT_S,
    sigkill_timeout: float = SIGKILL_TIMEOUT_S,
    poll_s: float = 0.02,
) -> None:
    """Stop the processes as ``ros2 launch`` does: SIGINT (unless they already got it), SIGTERM after
    ``sigterm_timeout``, SIGKILL ``sigkill_timeout`` later."""
    plan = [(signal.SIGINT if send_sigint else None, sigterm_timeout), (signal.SIGTERM, sigkill_timeout)]
    waited = 0.0
    for sig, wait_s in [*plan, (signal.SIGKILL, 0.0)]:
        alive = [(n, p) for n, p in zip(nodes, procs) if p.poll() is None]
        if not alive:
            return
        if sig in (signal.SIGTERM, signal.SIGKILL):
            names = ", ".join(n.label for n, _ in alive)
            _log(f"still running {waited:g} s after the last signal: {names}; sending {sig.name}")
        if sig is not None:
            for _, p in alive:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(p.poll() is None for _, p in alive):
            time.sleep(poll_s)
        waited = wait_s
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5)


def run_nodes(
    nodes: list[NodeSpec],
    poll_s: float = 0.05,
    sigterm_timeout: float = SIGTERM_TIMEOUT_S,
    sigkill_timeout: float = SIGKILL_TIMEOUT_S,
) -> int:
    """Start every node, supervise, stop all; returns the exit status of the launch."""
    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        if received:
            _log(f"{signal.Signals(signum).name} again while stopping: ignored")
        received.append(signum)

    with tempfile.TemporaryDirectory(prefix="robot_rl_launch_") as tmp:
        files = write_params_files(nodes, tmp)
        commands = [n.command(f) for n, f in zip(nodes, files)]  # fail before starting anything
        procs: list[subprocess.Popen] = []
        witness = GroupWitness()
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        status = 0
        send_sigint = True
        try:
            for node, cmd in zip(nodes, commands):
                if received:
                    break
                _log(f"starting {node.label}: {' '.join(cmd)}")
                procs.append(
                    subprocess.Popen(cmd, env=os.environ.copy(), preexec_fn=_child_setup(os.getpid()))
                )
            while not received:
                if all(p.poll() is not None for p in procs):
                    break
                exited = [
                    (n, p.poll()) for n, p in zip(nodes, procs) if n.shutdown_on_exit and p.poll() is not None
                ]
                if exited:
                    node, code = exited[0]
                    _log(f"{node.label} exited ({code}); stopping all")
                    status = code or 0
                    break
                time.sleep(poll_s)
            if received:
                sig = signal.Signals(received[0])
                if witness.received(sig):
                    send_sigint = False
                    _log(f"{sig.name} reached every process of the group: waiting for the nodes to stop")
                else:
                    _log(f"{sig.name}: stopping all")
        finally:
            _stop(nodes[: len(procs)], procs, send_sigint, sigterm_timeout, sigkill_timeout)
            witness.close()
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
    parser.add_argument(
        "--print", action="store_true", help="print each node's command line and parameter file, then exit"
    )
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
        plan = load_launch_file(ns.file, overrides)
        if ns.print:
            for i, node in enumerate(plan.nodes):
                file = f"<tmp>/{i:02d}_{node.label}.params.yaml" if node.params else None
                print(" ".join(node.command(file)))
                if node.params:
                    print("".join(f"  # {line}\n" for line in node.params_yaml().splitlines()), end="")
            sys.exit(0)
        sys.exit(
            run_nodes(plan.nodes, sigterm_timeout=plan.sigterm_timeout, sigkill_timeout=plan.sigkill_timeout)
        )
    except LaunchError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
