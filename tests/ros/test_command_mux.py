"""The command mux on its own over real DDS: its last word on SIGINT or SIGTERM is a hold."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ros]
rclpy = pytest.importorskip("rclpy", reason="rclpy not installed (pip install 'robot-rl[ros]')")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_mux_publishes_a_hold_before_it_stops(ros_domain, sig):
    from std_msgs.msg import Float32MultiArray

    from robot_rl.real.node_utils import command_qos

    env = dict(os.environ, ROS_DOMAIN_ID=str(ros_domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    exe = Path(sys.executable).parent / "robot-rl-command-mux"
    # a long watchdog: the policy's commands below must still be in force when the signal comes
    proc = subprocess.Popen(
        [str(exe), "--ros-args", "-p", "watchdog_periods:=100.0", "-p", "delta_dims:=[0, 1, 2]"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    rclpy.init(domain_id=ros_domain)
    node = rclpy.create_node("robot_rl_test_mux_probe")
    labels: list[tuple[str, list[float]]] = []
    try:
        node.create_subscription(
            Float32MultiArray,
            "/robot_rl/executed_action",
            lambda m: labels.append((m.layout.dim[0].label, list(m.data))),
            command_qos(100),
        )
        pub = node.create_publisher(Float32MultiArray, "/robot_rl/action", command_qos(1))
        t_end = time.monotonic() + 30
        while time.monotonic() < t_end and not any(lab == "source:policy" for lab, _ in labels):
            pub.publish(Float32MultiArray(data=[0.3, 0.0, 0.0, 0.5]))
            rclpy.spin_once(node, timeout_sec=0.05)
        assert any(lab == "source:policy" for lab, _ in labels), (labels[-3:], proc.poll())
        proc.send_signal(sig)
        proc.wait(timeout=15)
        t_end = time.monotonic() + 1.0
        while time.monotonic() < t_end:
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        node.destroy_node()
        rclpy.shutdown()
        if proc.poll() is None:
            proc.kill()
    label, action = labels[-1]
    assert label == "source:hold:shutdown", labels[-3:]
    assert action[:3] == [0.0, 0.0, 0.0] and action[3] == pytest.approx(0.5)  # delta dims stop, gripper stays
