"""Run a launch file on an isolated loopback ROS 2 domain with a probe node beside it: the harness of
the ROS integration tests and of ``robot-rl-bench ros``."""

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


@contextlib.contextmanager
def launched_graph(
    launch_file: Path, args: list[str], log_dir: Path, node_name: str, print_log: bool = True
) -> Iterator[Any]:
    """Run ``robot-rl-launch launch_file args`` on a random ROS domain (loopback discovery only) and
    yield ``(process, probe node)``; on exit the probe is destroyed, the launch gets SIGINT (SIGKILL
    after 20 s) and, with ``print_log``, the tail of its log (``log_dir/launch.log``) is printed."""
    import rclpy

    domain = random.randint(100, 200)
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    log_path = Path(log_dir) / "launch.log"
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
    if print_log:
        print(log_path.read_text()[-4000:])
