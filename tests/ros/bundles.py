"""Helpers for the ROS graph integration tests: a small untrained bc_chunk bundle for a sim task, and a
launch file started over loopback DDS with a probe node."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def make_bundle(path: Path, task: str = "robot_rl/Lift-v0", control_hz: float = 20.0) -> Path:
    import gymnasium as gym

    import robot_rl  # noqa: F401  (registers the ids)
    from robot_rl.core.types import ActionSpec, ObsSpec
    from robot_rl.deploy.bundle import save_bundle
    from robot_rl.policies.bc_chunk import BCChunkConfig, BCChunkPolicy

    env = gym.make(task)
    state_dim = int(env.observation_space["state"].shape[0])
    action_dim = int(env.action_space.shape[0])
    env.close()
    policy = BCChunkPolicy(
        BCChunkConfig(chunk_size=4, execution_horizon=2, hidden_dims=[32]),
        ObsSpec(state_dim),
        ActionSpec.normalized(action_dim),
    )
    policy.fit_normalizer(np.random.default_rng(0).normal(size=(64, state_dim)))
    return save_bundle(path, policy, control_hz=control_hz, task=task)


@contextlib.contextmanager
def launched_graph(launch_file: Path, args: list[str], log_dir: Path, node_name: str) -> Iterator[Any]:
    """Run ``robot-rl-launch launch_file args`` on a random ROS domain (loopback only) and yield
    ``(process, probe node)``; on exit the probe is destroyed, the launch gets SIGINT (SIGKILL after
    20 s) and the tail of its log is printed."""
    import rclpy

    domain = random.randint(100, 200)
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    log_path = log_dir / "launch.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "robot_rl.cli.launch", str(launch_file), *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        rclpy.init(domain_id=domain)
        node = rclpy.create_node(node_name)
        try:
            yield proc, node
        finally:
            node.destroy_node()
            rclpy.shutdown()
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(log_path.read_text()[-4000:])
