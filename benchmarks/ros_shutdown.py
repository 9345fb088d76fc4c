"""Stopping a launched ROS graph: does the recorder keep the episode in progress when a Ctrl-C reaches
the whole process group, as a terminal's Ctrl-C does?

``robot-rl-bench ros_shutdown [--runs 10] [--hz 50] [--task lift] [--min-obs 10] [--real-time]``

Each run starts ``robot-rl-launch launch/record_sim.launch.yaml`` (lockstep, or real time at ``--hz``
with ``--real-time``; ``auto_reset:=true``; an untrained ``bc_chunk`` bundle: its episodes run to the
horizon) in a session of its own on a reserved ROS domain. A probe node in this process waits until an
episode has ``--min-obs`` observations, then sends SIGINT to the launch's whole process group
(``os.killpg``), as a terminal does on Ctrl-C. A run *keeps* the episode when

- the launch exits by itself within ``--exit-timeout`` seconds (no SIGKILL from this script),
- every episode in the store is complete (readable, ``observations`` one longer than ``actions``,
  finite, the last step marked terminated or truncated),
- and the episode in progress at the signal is in the store (its first observation is the one the
  sim bridge announced with the last ``start`` event the probe saw before the signal; the probe
  counts from the first episode that starts once the recorder's services are up).

Prints one line per run and ``recorder episodes kept after group Ctrl-C: k of n``. A run that keeps
the recorder's episode in progress but not the graph's (in lockstep the graph can run ahead of the
recorder on a loaded machine: its episode in progress is then an older one) says so in its line.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from robot_rl.real.graph import DomainLock

TASKS = {"lift": "robot_rl/Lift-v0", "peg_insert": "robot_rl/PegInsert-v0", "push": "robot_rl/Push-v0"}
ROOT = Path(__file__).resolve().parents[1]


def launch_env(domain: int) -> dict[str, str]:
    """The environment of a launch on ``domain``, loopback discovery only, this interpreter's scripts."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def start_launch(launch_file: Path, args: list[str], log_path: Path, domain: int) -> subprocess.Popen:
    """``robot-rl-launch launch_file args`` in a new session (its own process group), output to log_path."""
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "robot_rl.cli.launch", str(launch_file), *args],
            env=launch_env(domain),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def store_problems(store_path: Path) -> tuple[list[Any], list[str]]:
    """(episodes, problems) of the episode store at ``store_path``: every episode must be complete."""
    import numpy as np

    from robot_rl.data.episode_store import EpisodeStore

    if not (store_path / "meta.json").exists() and not any(store_path.glob("*")):
        return [], []
    store = EpisodeStore(store_path)
    episodes, problems = [], []
    for i in range(len(store)):
        try:
            ep = store[i]
        except Exception as err:
            problems.append(f"episode {i} unreadable: {err}")
            continue
        episodes.append(ep)
        n_obs = ep.observations["state"].shape[0]
        if ep.length < 1 or n_obs != ep.length + 1:
            problems.append(f"episode {i}: {ep.length} steps, {n_obs} observations")
        elif not (ep.terminated[-1] or ep.truncated[-1]):
            problems.append(f"episode {i}: last step neither terminated nor truncated")
        elif not (np.all(np.isfinite(ep.actions)) and np.all(np.isfinite(ep.observations["state"]))):
            problems.append(f"episode {i}: non-finite values")
    return episodes, problems


def interrupt_trial(
    workdir: Path,
    bundle: Path,
    task: str = "robot_rl/Lift-v0",
    hz: float = 50.0,
    min_obs: int = 10,
    start_timeout: float = 120.0,
    exit_timeout: float = 30.0,
    sig: int = signal.SIGINT,
    group: bool = True,
    lockstep: bool = True,
) -> dict[str, Any]:
    """One run (see the module docstring): ``sig`` goes to the launch's whole process group, or with
    ``group=False`` to robot-rl-launch alone; ``lockstep=False`` runs the graph in real time at ``hz``.
    Returns ``{"kept": bool, "why": str, ...}``."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Header
    from std_srvs.srv import Trigger

    from robot_rl.real.node_utils import EPISODE_EVENT_TOPIC, command_qos, latched_qos, stamp_to_s

    workdir.mkdir(parents=True, exist_ok=True)
    store_path = workdir / "store"
    domain_lock = DomainLock()  # released in the finally below
    domain = domain_lock.domain
    args = [
        f"bundle:={bundle}",
        f"store:={store_path}",
        f"task:={task}",
        f"control_hz:={hz}",
        f"lockstep:={str(lockstep).lower()}",
        "auto_reset:=true",
    ]
    log_path = workdir / "launch.log"
    proc = start_launch(ROOT / "launch/record_sim.launch.yaml", args, log_path, domain)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("robot_rl_shutdown_probe", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    state = {"start": None, "n": 0, "armed": False}

    def on_event(msg: Header) -> None:
        if msg.frame_id == "start" and state["armed"]:  # an episode the recorder sees from its start
            state["start"], state["n"] = stamp_to_s(msg.stamp), 0

    def on_obs(msg: JointState) -> None:
        if state["start"] is not None and stamp_to_s(msg.header.stamp) >= state["start"]:
            state["n"] += 1

    node.create_subscription(Header, EPISODE_EVENT_TOPIC, on_event, latched_qos(10))
    node.create_subscription(JointState, "/robot_rl/observation/state", on_obs, command_qos(100))
    recorder = node.create_client(Trigger, "/robot_rl/recorder/end_episode")
    result: dict[str, Any] = {"kept": False, "why": ""}
    try:
        t_end = time.monotonic() + start_timeout
        # the recorder is up (its services come after its subscriptions): count from the next episode
        while not recorder.service_is_ready() and proc.poll() is None and time.monotonic() < t_end:
            executor.spin_once(timeout_sec=0.01)
        state["armed"] = True
        while state["n"] < min_obs and proc.poll() is None and time.monotonic() < t_end:
            executor.spin_once(timeout_sec=0.01)
        if state["n"] < min_obs:
            result["why"] = "the graph did not start (no episode in progress)"
            return result
        in_progress, seen = state["start"], state["n"]
        if group:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
        t0 = time.monotonic()
        try:
            proc.wait(timeout=exit_timeout)
        except subprocess.TimeoutExpired:
            result["why"] = f"the launch did not exit within {exit_timeout:g} s of the Ctrl-C"
            return result
        result.update(exit_s=round(time.monotonic() - t0, 2), returncode=proc.returncode, seen=seen)
        episodes, problems = store_problems(store_path)
        result["episodes"] = len(episodes)
        # the episode that started at that event (the recorder drops a graph's first observations
        # before any executed action, so its first stored observation can be a little later)
        found = [ep for ep in episodes if ep.metadata["obs_stamps"][0] >= in_progress - 1e-6]
        if problems:
            result["why"] = "; ".join(problems)
        elif not found and episodes and episodes[-1].metadata["end_reason"] == "shutdown":
            last = episodes[-1]
            result["why"] = (
                f"the recorder was behind the graph: the episode it saved on shutdown ({last.length} "
                f"steps) started {in_progress - last.metadata['obs_stamps'][0]:.2f} s before the one "
                f"in progress"
            )
        elif not found:
            result["why"] = f"the episode in progress ({seen}+ observations) is not in the store"
        else:
            result.update(kept=True, end_reason=found[0].metadata["end_reason"], steps=found[0].length)
        return result
    finally:
        executor.remove_node(node)
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        result["log_tail"] = log_path.read_text()[-3000:]
        domain_lock.release()  # the graph is gone: the domain is free again


def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="robot-rl-bench ros_shutdown", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--hz", type=float, default=50.0)
    p.add_argument("--task", default="lift", choices=sorted(TASKS))
    p.add_argument("--min-obs", type=int, default=10, help="observations of the episode before Ctrl-C")
    p.add_argument("--exit-timeout", type=float, default=30.0)
    p.add_argument("--real-time", action="store_true", help="the graph in real time at --hz, not lockstep")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="print the launch log of runs that lost data or were slow to stop",
    )
    a = p.parse_args(argv)
    try:
        import rclpy  # noqa: F401
    except ImportError:
        print(
            "error: robot-rl-bench ros_shutdown needs rclpy: pip install 'robot-rl[ros,sim]'", file=sys.stderr
        )
        return 2
    from robot_rl.benchmarks.ros import make_default_bundle

    kept = 0
    with tempfile.TemporaryDirectory() as tmp:
        bundle = make_default_bundle(Path(tmp) / "bundle", "bc_chunk", TASKS[a.task], a.hz)
        for i in range(a.runs):
            r = interrupt_trial(
                Path(tmp) / f"run{i}",
                bundle,
                TASKS[a.task],
                a.hz,
                a.min_obs,
                exit_timeout=a.exit_timeout,
                lockstep=not a.real_time,
            )
            kept += r["kept"]
            log = r.pop("log_tail")
            print(f"run {i + 1}: " + " ".join(f"{k}={v}" for k, v in r.items()), flush=True)
            if a.verbose and (not r["kept"] or r.get("exit_s", 0) > 3.0):
                print(log, flush=True)
    print(f"recorder episodes kept after group Ctrl-C: {kept} of {a.runs}")
    return 0 if kept == a.runs else 1
