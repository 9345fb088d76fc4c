"""ROS 2 control-loop benchmark: the policy node driving the sim bridge through the command mux, in real
time, over loopback DDS (separate processes, the ``sim_in_the_loop`` launch file).

``robot-rl-bench ros [--policies bc_chunk,diffusion] [--hz 20,50] [--duration 60] [--task lift]
[--out result.json]``

Each (policy, rate) pair starts the graph (``robot-rl-launch launch/sim_in_the_loop.launch.yaml``,
``auto_reset:=true``, the policy answering each observation: ``act_on_state``) with a bundle of the
policy's default architecture (``configs/policy/<name>.yaml``: ``bc_chunk`` MLP 256×256, chunk 8,
4 executed per chunk; ``diffusion`` MLP-ResNet 256×3, DDIM with 10 steps, chunk 8, 4 executed).
The weights are untrained: latency does not depend on them (the arm moves, episodes end at the
horizon and restart). A probe node in this process listens for ``--duration`` seconds after a
``--warmup`` and reports:

- ``obs → command`` latency: from an observation's header stamp (wall time, set by the sim bridge when
  it publishes) to the arrival at the probe of the robot command (``/forward_position_controller/
  commands``) that answers it (the mux forwards the observation stamp it answers): p50, p99, max;
- deadline misses: observations whose command arrived more than one control period after the stamp,
  or never (``unanswered``; the episode-start observations are counted like the others);
- the policy node's own inference time per step (``/robot_rl/policy/inference_ms``: observation
  assembly + ``act`` + publish), p50 / p99, and how often it exceeded the period;
- watchdog holds published by the mux.

Every process shares the machine's cores with the others (sim bridge, mux, policy, probe).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

TASKS = {"lift": "robot_rl/Lift-v0", "peg_insert": "robot_rl/PegInsert-v0", "push": "robot_rl/Push-v0"}


def make_default_bundle(path: Path, policy: str, task: str, control_hz: float) -> Path:
    """A bundle of ``policy`` with its default config (untrained weights, normalizer fitted on random
    states) for ``task``."""
    import gymnasium as gym

    import robot_rl  # noqa: F401  (registers the ids)
    from robot_rl.core.types import ActionSpec, ObsSpec
    from robot_rl.deploy.bundle import save_bundle
    from robot_rl.policies import POLICIES

    env = gym.make(task)
    state_dim = int(env.observation_space["state"].shape[0])
    action_dim = int(env.action_space.shape[0])
    env.close()
    cfg = POLICIES.config_cls(policy)()
    model = POLICIES.build(policy, cfg, ObsSpec(state_dim), ActionSpec.normalized(action_dim))
    rng = np.random.default_rng(0)
    model.fit_normalizer(rng.normal(size=(256, state_dim)), rng.uniform(-1, 1, size=(256, action_dim)))
    return save_bundle(path, model, control_hz=control_hz, task=task)


class _Probe:
    """Records observation stamps, answered commands, inference times and holds (callbacks of the probe
    node, spun in a background thread)."""

    def __init__(self, node: Any) -> None:
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float32, Float64MultiArray, String

        from robot_rl.real.conversions import obs_stamp_of
        from robot_rl.real.node_utils import command_qos, stamp_to_s

        self.lock = threading.Lock()
        self.recording = False  # observations inside the measured window
        self.answering = False  # commands: the window plus a grace period for answers in flight
        self.obs: list[float] = []  # header stamps, s (wall)
        self.answers: dict[float, float] = {}  # obs stamp -> arrival time of its command, s (wall)
        self.inference_ms: list[float] = []
        self.holds = 0
        self.policy_commands = 0  # any time, recording or not (for the warm-up wait)

        def on_obs(msg: JointState) -> None:
            if self.recording:
                with self.lock:
                    self.obs.append(stamp_to_s(msg.header.stamp))

        def on_command(msg: Float64MultiArray) -> None:
            now = time.time()
            stamp = obs_stamp_of([d.label for d in msg.layout.dim])
            if stamp is None:
                return
            self.policy_commands += 1
            if self.answering:
                with self.lock:
                    self.answers.setdefault(stamp, now)

        def on_inference(msg: Float32) -> None:
            if self.recording:
                with self.lock:
                    self.inference_ms.append(float(msg.data))

        def on_source(msg: String) -> None:
            if self.recording and msg.data == "hold:watchdog":
                with self.lock:
                    self.holds += 1

        node.create_subscription(JointState, "/robot_rl/observation/state", on_obs, command_qos(100))
        node.create_subscription(
            Float64MultiArray, "/forward_position_controller/commands", on_command, command_qos(100)
        )
        node.create_subscription(Float32, "/robot_rl/policy/inference_ms", on_inference, command_qos(100))
        node.create_subscription(String, "/robot_rl/command_source", on_source, command_qos(100))


def summarize(
    obs: list[float], answers: dict[float, float], inference_ms: list[float], holds: int, hz: float
) -> dict[str, Any]:
    """Latency and deadline figures from the probe's records (pure; unit-tested)."""
    period_ms = 1e3 / hz
    latency_ms = np.array([1e3 * (answers[s] - s) for s in obs if s in answers])
    unanswered = sum(s not in answers for s in obs)
    late = int((latency_ms > period_ms).sum()) if latency_ms.size else 0
    inf = np.array(inference_ms)

    def pct(x: np.ndarray, q: float) -> float | None:
        return round(float(np.percentile(x, q)), 3) if x.size else None

    return {
        "hz": hz,
        "period_ms": round(period_ms, 3),
        "observations": len(obs),
        "answered": int(latency_ms.size),
        "unanswered": int(unanswered),
        "late": late,
        "deadline_misses": late + int(unanswered),
        "latency_ms_p50": pct(latency_ms, 50),
        "latency_ms_p99": pct(latency_ms, 99),
        "latency_ms_max": round(float(latency_ms.max()), 3) if latency_ms.size else None,
        "inference_ms_p50": pct(inf, 50),
        "inference_ms_p99": pct(inf, 99),
        "inference_over_period": int((inf > period_ms).sum()),
        "watchdog_holds": holds,
    }


def run_one(policy: str, task: str, hz: float, duration: float, warmup: float, workdir: Path) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from robot_rl.real.graph import launched_graph

    root = Path(__file__).resolve().parents[1]
    launch = root / "launch/sim_in_the_loop.launch.yaml"
    if not launch.exists():  # an installed wheel: the launch files live in the repository only
        raise FileNotFoundError(f"{launch} not found: run robot-rl-bench ros from a repository checkout")
    workdir.mkdir(parents=True, exist_ok=True)
    bundle = make_default_bundle(workdir / "bundle", policy, task, hz)
    args = [f"bundle:={bundle}", f"task:={task}", f"control_hz:={hz}", "auto_reset:=true"]
    with launched_graph(launch, args, workdir, "robot_rl_bench_probe", print_log=False) as (proc, node):
        probe = _Probe(node)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        stop = threading.Event()

        def spin() -> None:
            while not stop.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.05)

        thread = threading.Thread(target=spin, daemon=True)
        thread.start()
        try:
            t_end = time.monotonic() + 120
            while probe.policy_commands < 10:
                if proc.poll() is not None or time.monotonic() > t_end:
                    log = (workdir / "launch.log").read_text()[-3000:]
                    raise RuntimeError(f"the graph did not start (no policy commands):\n{log}")
                time.sleep(0.1)
            time.sleep(warmup)
            probe.answering = probe.recording = True
            time.sleep(duration)
            probe.recording = False
            time.sleep(1.0)  # answers to the last observations still in flight
            probe.answering = False
        finally:
            stop.set()
            thread.join(timeout=5)
            executor.remove_node(node)
    with probe.lock:
        out = summarize(probe.obs, probe.answers, probe.inference_ms, probe.holds, hz)
    return {"policy": policy, "task": task, "duration_s": duration, **out}


def markdown(rows: list[dict]) -> str:
    lines = [
        "| policy | Hz | obs | late | unanswered | obs→command p50 ms | p99 ms | max ms "
        "| inference p50 ms | p99 ms | holds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['policy']} | {r['hz']:g} | {r['observations']} | {r['late']} | {r['unanswered']} | "
            f"{r['latency_ms_p50']} | {r['latency_ms_p99']} | {r['latency_ms_max']} | "
            f"{r['inference_ms_p50']} | {r['inference_ms_p99']} | {r['watchdog_holds']} |"
        )
    return "\n".join(lines)


def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="robot-rl-bench ros", description=__doc__.split("\n\n")[0])
    p.add_argument("--policies", default="bc_chunk,diffusion")
    p.add_argument("--hz", default="20,50")
    p.add_argument("--duration", type=float, default=60.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds after the first command")
    p.add_argument("--task", default="lift", choices=sorted(TASKS))
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    try:
        import rclpy  # noqa: F401
    except ImportError:
        print("error: robot-rl-bench ros needs rclpy: pip install 'robot-rl[ros,sim]'", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for policy in [s for s in a.policies.split(",") if s]:
            for hz in [float(h) for h in a.hz.split(",") if h]:
                row = run_one(policy, TASKS[a.task], hz, a.duration, a.warmup, Path(tmp) / f"{policy}_{hz:g}")
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(markdown(rows))
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=2))
    return 0
