"""The command mux's safety figures, measured by an independent subscriber over real DDS on loopback:
how soon the robot gets hold commands after the policy process dies, and how far an adversarial 1 kHz
publisher can move the robot command.

``robot-rl-bench ros_safety [--kills 10] [--adversary-s 5] [--task lift] [--out result.json]``

Every run starts ``robot-rl-launch launch/sim_in_the_loop.launch.yaml bundle:=<b>`` with the launch
file's defaults (20 Hz, ``watchdog_periods`` 1.5, ``max_delta`` 0.5, real time, the policy answering
each observation) and an untrained ``bc_chunk`` bundle of the default architecture (timing does not
depend on the weights). A probe node in this process subscribes ``/robot_rl/executed_action`` (the
command the mux sent and its ``source:<label>``) and timestamps each message on arrival.

- **Kill**: once the policy's commands flow, the probe waits a random 0-50 ms (so the kill falls at
  any phase of the control period), sends SIGKILL to the policy process and measures the time to the
  first ``hold:watchdog`` at the probe. It also counts commands labelled ``policy`` that arrive more
  than 20 ms after the kill (a repeat must say ``repeat:policy``). One graph per kill.
- **Adversary**: a second node in this process publishes ``+1`` / ``-1`` (alternating, every dim) on
  ``/robot_rl/action`` at 1 kHz beside the policy for ``--adversary-s`` seconds. From the commands
  the probe received it reports the largest change between consecutive commands, the largest change
  between the commands in force at consecutive mux ticks (the command published at each tick is the
  first of a pair: under a flood the mux publishes one fresh action at once per period and the
  latest waiting one at the next tick), the largest change over any window of one control period
  (a sampler at another phase than the mux's ticks), and the command rate.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

TASKS = {"lift": "robot_rl/Lift-v0", "peg_insert": "robot_rl/PegInsert-v0", "push": "robot_rl/Push-v0"}
ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch/sim_in_the_loop.launch.yaml"
HZ = 20.0  # the launch file's default control rate
MAX_DELTA = 0.5  # the launch file's default max_delta


class _Probe:
    """Arrival times, labels and actions of every executed command (spun in a background thread)."""

    def __init__(self, node: Any) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import Float32MultiArray

        from robot_rl.real.node_utils import command_qos

        self.lock = threading.Lock()
        self.rows: list[tuple[float, str, np.ndarray]] = []

        def on_executed(msg: Float32MultiArray) -> None:
            now = time.monotonic()
            label = next((d.label[7:] for d in msg.layout.dim if d.label.startswith("source:")), "")
            with self.lock:
                self.rows.append((now, label, np.asarray(msg.data, dtype=np.float64)))

        node.create_subscription(
            Float32MultiArray, "/robot_rl/executed_action", on_executed, command_qos(1000)
        )
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(node)
        self.stop = threading.Event()

        def spin() -> None:
            while not self.stop.is_set() and rclpy.ok():
                self.executor.spin_once(timeout_sec=0.01)

        self.thread = threading.Thread(target=spin, daemon=True)
        self.thread.start()

    def count(self, label: str, after: float = -np.inf) -> int:
        with self.lock:
            return sum(lab == label and t > after for t, lab, _ in self.rows)

    def first(self, label: str, after: float) -> float | None:
        with self.lock:
            return next((t for t, lab, _ in self.rows if lab == label and t > after), None)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def _policy_pid(launch_pid: int) -> int:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes()
            if int(fields[1]) == launch_pid and b"robot-rl-policy-node" in cmd:
                return int(stat.parent.name)
        except (OSError, IndexError, ValueError):
            continue
    raise RuntimeError("no policy process under the launch")


def _wait(pred, timeout: float, proc) -> bool:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if pred():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    return pred()


def one_kill(bundle: Path, workdir: Path, task: str) -> dict[str, Any]:
    import os

    from robot_rl.real.graph import launched_graph

    args = [f"bundle:={bundle}", f"task:={task}", "auto_reset:=true"]
    with launched_graph(LAUNCH, args, workdir, "robot_rl_safety_probe", print_log=False) as (proc, node):
        probe = _Probe(node)
        try:
            if not _wait(lambda: probe.count("policy") >= 20, 120, proc):
                raise RuntimeError(
                    "the graph did not start:\n" + (workdir / "launch.log").read_text()[-3000:]
                )
            time.sleep(random.uniform(0.0, 0.05))
            pid = _policy_pid(proc.pid)
            t_kill = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            _wait(lambda: probe.first("hold:watchdog", t_kill) is not None, 5, proc)
            t_hold = probe.first("hold:watchdog", t_kill)
            late_policy = probe.count("policy", t_kill + 0.02)
        finally:
            probe.close()
    return {
        "hold_ms": None if t_hold is None else round(1e3 * (t_hold - t_kill), 1),
        "policy_labels_after_kill": late_policy,
    }


def adversary_figures(rows: list[tuple[float, str, np.ndarray]], period: float) -> dict[str, Any]:
    """Figures of the commands received during the flood (pure; unit-tested)."""
    times = np.array([t for t, _, _ in rows])
    acts = np.array([a for _, _, a in rows])
    per_message = float(np.abs(np.diff(acts, axis=0)).max()) if len(acts) > 1 else 0.0
    # ticks: a command that follows a silence of more than a quarter period opens a new tick's pair
    gaps = np.diff(times, prepend=-np.inf)
    tick_cmds = acts[gaps > period / 4]
    per_tick = float(np.abs(np.diff(tick_cmds, axis=0)).max()) if len(tick_cmds) > 1 else 0.0
    window = 0.0  # any two commands in force within one period of each other
    for i in range(len(times)):
        j = np.searchsorted(times, times[i] - period, side="right")  # commands after t_i - period
        lo = max(j - 1, 0)  # ...and the one in force at t_i - period
        window = max(window, float(np.abs(acts[lo : i + 1] - acts[i]).max()))
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    return {
        "commands": len(rows),
        "commands_per_s": round(len(rows) / span, 1) if span else None,
        "max_delta_per_message": round(per_message, 4),
        "max_delta_per_tick": round(per_tick, 4),
        "ticks": len(tick_cmds),
        "max_delta_any_period_window": round(window, 4),
        "labels": sorted({lab for _, lab, _ in rows}),
    }


def adversary(bundle: Path, workdir: Path, task: str, seconds: float) -> dict[str, Any]:
    import rclpy
    from std_msgs.msg import Float32MultiArray

    from robot_rl.real.graph import launched_graph
    from robot_rl.real.node_utils import command_qos

    args = [f"bundle:={bundle}", f"task:={task}", "auto_reset:=true"]
    with launched_graph(LAUNCH, args, workdir, "robot_rl_safety_probe", print_log=False) as (proc, node):
        probe = _Probe(node)
        attacker = rclpy.create_node("robot_rl_adversary")
        pub = attacker.create_publisher(Float32MultiArray, "/robot_rl/action", command_qos(1))
        try:
            if not _wait(lambda: probe.count("policy") >= 20, 120, proc):
                raise RuntimeError(
                    "the graph did not start:\n" + (workdir / "launch.log").read_text()[-3000:]
                )
            time.sleep(1.0)  # discovery of the attacker's publisher
            t0 = time.monotonic()
            sent, sign, next_t = 0, 1.0, t0
            while time.monotonic() < t0 + seconds:
                pub.publish(Float32MultiArray(data=[sign] * 4))
                sent += 1
                sign = -sign
                next_t += 0.001
                time.sleep(max(0.0, next_t - time.monotonic()))
            t1 = time.monotonic()
            time.sleep(0.2)
            with probe.lock:
                rows = [r for r in probe.rows if t0 + 0.1 < r[0] <= t1]
        finally:
            attacker.destroy_node()
            probe.close()
    return {"sent": sent, "sent_per_s": round(sent / (t1 - t0), 1), **adversary_figures(rows, 1.0 / HZ)}


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="robot-rl-bench ros_safety", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10, help="policy SIGKILLs, one graph each (default 10)")
    parser.add_argument(
        "--adversary-s", type=float, default=5.0, help="seconds of the 1 kHz flood (0 = skip)"
    )
    parser.add_argument("--task", default="lift", choices=sorted(TASKS))
    parser.add_argument("--out", help="write the results as JSON here")
    ns = parser.parse_args(argv)
    if ns.kills < 0 or ns.adversary_s < 0:
        print("error: --kills and --adversary-s must be >= 0", file=sys.stderr)
        return 2
    if not LAUNCH.exists():
        print(f"error: {LAUNCH} not found: run from a repository checkout", file=sys.stderr)
        return 2
    from robot_rl.benchmarks.ros import make_default_bundle

    task = TASKS[ns.task]
    result: dict[str, Any] = {"task": task, "hz": HZ, "max_delta": MAX_DELTA}
    with tempfile.TemporaryDirectory(prefix="robot_rl_ros_safety_") as tmp:
        bundle = make_default_bundle(Path(tmp) / "bundle", "bc_chunk", task, HZ)
        kills = []
        for k in range(ns.kills):
            workdir = Path(tmp) / f"kill_{k}"
            workdir.mkdir()
            row = one_kill(bundle, workdir, task)
            kills.append(row)
            print(
                f"kill {k + 1}/{ns.kills}: first hold {row['hold_ms']} ms after SIGKILL, "
                f"{row['policy_labels_after_kill']} 'policy' labels after it",
                flush=True,
            )
        if kills:
            held = [r["hold_ms"] for r in kills if r["hold_ms"] is not None]
            result["kill"] = {
                "runs": len(kills),
                "held": len(held),
                "hold_ms_p50": round(float(np.median(held)), 1) if held else None,
                "hold_ms_max": max(held) if held else None,
                "policy_labels_after_kill": sum(r["policy_labels_after_kill"] for r in kills),
                "runs_ms": [r["hold_ms"] for r in kills],
            }
            print(
                f"policy SIGKILL -> hold: p50 {result['kill']['hold_ms_p50']} ms, max "
                f"{result['kill']['hold_ms_max']} ms over {len(held)} of {len(kills)} kills; "
                f"'policy' labels after a kill: {result['kill']['policy_labels_after_kill']}",
                flush=True,
            )
        if ns.adversary_s > 0:
            workdir = Path(tmp) / "adversary"
            workdir.mkdir()
            adv = result["adversary"] = adversary(bundle, workdir, task, ns.adversary_s)
            print(
                f"1 kHz adversary ({adv['sent_per_s']} msg/s sent): {adv['commands']} commands "
                f"({adv['commands_per_s']}/s); max |delta| per message {adv['max_delta_per_message']}, "
                f"per mux tick {adv['max_delta_per_tick']} over {adv['ticks']} ticks, over any one-period "
                f"window {adv['max_delta_any_period_window']} (max_delta {MAX_DELTA})",
                flush=True,
            )
    if ns.out:
        Path(ns.out).write_text(json.dumps(result, indent=2))
    return 0
