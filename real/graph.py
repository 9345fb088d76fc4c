"""Run a launch file on an isolated loopback ROS 2 domain with a probe node beside it: the harness of
the ROS integration tests and of ``robot-rl-bench ros``."""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Fast DDS listens on UDP 7400 + 250 * domain (+ offsets): domains 1-101 keep every port below 32768,
# outside Linux's ephemeral range, and away from domain 0 (a user's own graph)
DOMAINS = range(1, 102)


class DomainLock:
    """A ROS domain id that no other process of this host holds until :meth:`release`.

    Each id is a lock file (``fcntl.flock``) in the temp folder, freed by the kernel if the process
    dies; the scan starts at a point drawn from the OS's entropy (not the ``random`` module, which
    every Trainer run re-seeds), so two test runs or benchmarks on one host never share a domain.
    """

    def __init__(self) -> None:
        start = random.SystemRandom().randrange(len(DOMAINS))
        for k in range(len(DOMAINS)):
            domain = DOMAINS[(start + k) % len(DOMAINS)]
            path = Path(tempfile.gettempdir()) / f"robot_rl_ros_domain_{domain}.lock"
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.domain, self._fd = domain, fd
            return
        raise RuntimeError(f"every ROS domain {DOMAINS.start}-{DOMAINS.stop - 1} is in use on this host")

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@contextlib.contextmanager
def reserved_domain() -> Iterator[int]:
    """A :class:`DomainLock`'s domain id for the duration of the block."""
    lock = DomainLock()
    try:
        yield lock.domain
    finally:
        lock.release()


@contextlib.contextmanager
def launched_graph(
    launch_file: Path, args: list[str], log_dir: Path, node_name: str, print_log: bool = True
) -> Iterator[Any]:
    """Run ``robot-rl-launch launch_file args`` on a reserved ROS domain (loopback discovery only) and
    yield ``(process, probe node)``; on exit the probe is destroyed, the launch gets SIGINT (SIGKILL
    after 20 s) and, with ``print_log``, the tail of its log (``log_dir/launch.log``) is printed."""
    with reserved_domain() as domain:
        yield from _launched_graph(domain, launch_file, args, log_dir, node_name, print_log)


def _launched_graph(
    domain: int, launch_file: Path, args: list[str], log_dir: Path, node_name: str, print_log: bool
) -> Iterator[Any]:
    import rclpy

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
