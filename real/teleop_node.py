"""``robot-rl-teleop-node``: a teleop device on the ROS graph (docs/hil.md, docs/ros.md).

Reads the device (``device``: keyboard | gamepad | spacemouse, from :mod:`robot_rl.teleop`) at
``control_hz`` and publishes, every period, ``/robot_rl/intervention`` (Bool: the takeover flag) and,
while it takes over, ``/robot_rl/teleop/action`` (Float32MultiArray, the normalized action); the
command mux executes it and labels it ``teleop``. Events go to ``/robot_rl/teleop/event`` (String)
and drive the recorder: ``success``/``failure``/``end`` call ``/robot_rl/recorder/end_episode``,
``rerecord`` calls ``/robot_rl/recorder/discard`` (both Trigger, asynchronous: a missing recorder
never blocks the device loop).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robot_rl.core.optional import require

require("rclpy", "the teleop node")

from rclpy.node import Node  # noqa: E402
from std_msgs.msg import Bool, Float32MultiArray, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from robot_rl.real.node_utils import ConfigError, choice, command_qos, declare, positive, run_node  # noqa: E402
from robot_rl.teleop.base import END, FAILURE, RERECORD, SUCCESS  # noqa: E402

DEVICES = ("keyboard", "gamepad", "spacemouse")  # the simulated human needs the simulator: not here


class TeleopNode(Node):
    """Parameters: device, control_hz, action_dim. ``device_override``: an already built device
    (tests inject one with a fake input source)."""

    def __init__(self, device_override: Any = None) -> None:
        super().__init__("robot_rl_teleop")
        name = choice(
            "device", declare(self, "device", str, "keyboard", "keyboard | gamepad | spacemouse"), DEVICES
        )
        hz = positive("control_hz", declare(self, "control_hz", float, 20.0, "device read rate, Hz"))
        self.action_dim = declare(self, "action_dim", int, 4, "normalized action dimension Da")
        if device_override is not None:
            self.device = device_override
        else:
            from robot_rl.teleop import TELEOP

            try:
                self.device = TELEOP.build(name, TELEOP.config_cls(name)())
            except (ImportError, RuntimeError) as err:  # backend missing, no device plugged in
                raise ConfigError(f"cannot open the {name}: {err}") from err
        self.action_pub = self.create_publisher(Float32MultiArray, "/robot_rl/teleop/action", command_qos(1))
        self.flag_pub = self.create_publisher(Bool, "/robot_rl/intervention", command_qos(1))
        self.event_pub = self.create_publisher(String, "/robot_rl/teleop/event", command_qos(10))
        self.end_client = self.create_client(Trigger, "/robot_rl/recorder/end_episode")
        self.discard_client = self.create_client(Trigger, "/robot_rl/recorder/discard")
        self.events_sent: list[str] = []
        self.create_timer(1.0 / hz, self._on_tick)
        self.get_logger().info(f"teleop: {name} at {hz:g} Hz")

    def _on_tick(self) -> None:
        cmd = self.device.command({}, np.zeros(self.action_dim, np.float32))
        if cmd.takeover:
            action = np.asarray(cmd.action, np.float32).reshape(-1)
            if action.size == self.action_dim and np.all(np.isfinite(action)):
                self.action_pub.publish(Float32MultiArray(data=action.tolist()))
        self.flag_pub.publish(Bool(data=bool(cmd.takeover)))
        for event in sorted(cmd.events):
            self.event_pub.publish(String(data=event))
            self.events_sent.append(event)
            client = self.discard_client if event == RERECORD else self.end_client
            if event in (SUCCESS, FAILURE, END, RERECORD) and client.service_is_ready():
                client.call_async(Trigger.Request())
            elif event in (SUCCESS, FAILURE, END, RERECORD):
                self.get_logger().warning(f"teleop event {event!r}: no recorder service to tell")

    def close(self) -> None:
        self.device.close()


def main() -> None:
    run_node("teleop", TeleopNode)


if __name__ == "__main__":
    main()
