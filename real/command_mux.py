"""``robot-rl-command-mux``: policy/teleop mux + safety filter between the policy and the robot.

Subscribes ``/robot_rl/action`` and ``/robot_rl/teleop/action`` (Float32MultiArray, normalized),
``/robot_rl/intervention`` (Bool); offers ``/robot_rl/estop`` (SetBool: true latches, false releases).
Publishes the filtered command to the robot (``command_type``: ``forward`` Float64MultiArray,
``joint_trajectory`` JointTrajectory or ``twist`` TwistStamped on ``command_topic``),
``/robot_rl/executed_action`` (Float32MultiArray, normalized, ``layout.dim[0].label`` =
``source:<label>``) and ``/robot_rl/command_source`` (String: the label alone). Labels:
:data:`robot_rl.real.safety.LABELS` (``policy``, ``teleop``, ``repeat:<source>``, ``hold:<reason>``).

A fresh action is filtered and published at once (no added phase delay; a second one within the
same control period waits for the next tick); a steady-clock timer at ``control_hz`` fills periods
without a fresh action (a repeat, or a hold), and a faster one publishes the watchdog's hold as soon
as the selected source has been silent for ``watchdog_periods`` periods. The rules live in
:mod:`robot_rl.real.safety`. With ``lockstep:=true`` (the sim bridge's lockstep mode, where every
command advances the simulation by one step) repeats are not published; holds are. On shutdown the
mux publishes one last hold (``hold:shutdown``).
"""

from __future__ import annotations

import contextlib
import threading
import time

import numpy as np

from robot_rl.core.optional import require

require("rclpy", "the command_mux node")

from geometry_msgs.msg import PointStamped, TwistStamped  # noqa: E402
from rclpy.clock import Clock as RosClock  # noqa: E402
from rclpy.clock import ClockType  # noqa: E402
from rclpy.node import Node  # noqa: E402
from std_msgs.msg import Bool, Float32MultiArray, Float64MultiArray, MultiArrayDimension, String  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from robot_rl.real.conversions import action_to_twist, obs_stamp_label, obs_stamp_of, scale_command  # noqa: E402
from robot_rl.real.node_utils import (  # noqa: E402
    ConfigError,
    choice,
    command_qos,
    declare,
    positive,
    run_node,
    sensor_qos,
)
from robot_rl.real.safety import HOLD_REASONS, SafetyConfig, SafetyFilter, SafetyOutput  # noqa: E402

COMMAND_TYPES = ("forward", "joint_trajectory", "twist")
DEFAULT_TOPICS = {
    "forward": "/forward_position_controller/commands",
    "joint_trajectory": "/joint_trajectory_controller/joint_trajectory",
    "twist": "/servo_node/delta_twist_cmds",
}


def _broadcast(name: str, values: list[float], dim: int) -> tuple[float, ...]:
    if len(values) == 1:
        return tuple(values) * dim
    if len(values) != dim:
        raise ConfigError(f"parameter {name!r} has {len(values)} values; expected 1 or action_dim={dim}")
    return tuple(values)


class CommandMuxNode(Node):
    """Parameters: action_dim, control_hz, low, high, max_delta, watchdog_periods, delta_dims, box_low,
    box_high, ee_scale, tcp_topic, max_tcp_age_s, command_type, command_topic, command_scale,
    command_offset, joint_names (joint_trajectory), frame_id (twist), lockstep."""

    def __init__(self) -> None:
        super().__init__("robot_rl_command_mux")
        dim = declare(self, "action_dim", int, 4, "normalized action dimension Da")
        if dim < 1:
            raise ConfigError(f"parameter 'action_dim' must be >= 1, got {dim}")
        self.period = 1.0 / positive(
            "control_hz", declare(self, "control_hz", float, 20.0, "control rate, Hz")
        )
        tcp_topic = declare(self, "tcp_topic", str, "", "PointStamped tcp position (m) for the box; '' = off")
        box_low = tuple(declare(self, "box_low", float, [], "workspace box low x,y,z (m)", True))
        box_high = tuple(declare(self, "box_high", float, [], "workspace box high x,y,z (m)", True))
        if (box_low or box_high) and not tcp_topic:
            self.get_logger().warning("workspace box set but tcp_topic is '': the box is off")
            box_low = box_high = ()
        self.lockstep = declare(self, "lockstep", bool, False, "the sim steps per command: no repeats")
        try:
            cfg = SafetyConfig(
                low=_broadcast("low", declare(self, "low", float, [-1.0], "action lower bounds", True), dim),
                high=_broadcast(
                    "high", declare(self, "high", float, [1.0], "action upper bounds", True), dim
                ),
                max_delta=_broadcast(
                    "max_delta",
                    declare(
                        self, "max_delta", float, [0.5], "max change per control period, normalized", True
                    ),
                    dim,
                ),
                period_s=self.period,
                watchdog_periods=declare(
                    self,
                    "watchdog_periods",
                    float,
                    1.5,
                    "control periods without a fresh action before hold (> 1)",
                ),
                delta_dims=tuple(
                    declare(self, "delta_dims", int, [], "velocity-like dims (hold -> 0)", True)
                ),
                box_low=box_low or None,
                box_high=box_high or None,
                ee_scale=declare(self, "ee_scale", float, 0.04, "m per normalized unit of dims 0-2"),
                max_tcp_age_s=declare(
                    self, "max_tcp_age_s", float, 0.25, "box: hold when the tcp position is older, s"
                ),
                lockstep=self.lockstep,
            )
        except ValueError as err:
            raise ConfigError(str(err)) from err
        self.command_type = choice(
            "command_type",
            declare(self, "command_type", str, "forward", "forward | joint_trajectory | twist"),
            COMMAND_TYPES,
        )
        topic = declare(self, "command_topic", str, "", "robot command topic; '' = the controller default")
        self.scale = np.array(
            _broadcast(
                "command_scale",
                declare(self, "command_scale", float, [1.0], "physical = offset + scale * action", True),
                dim,
            )
        )
        self.offset = np.array(
            _broadcast(
                "command_offset",
                declare(self, "command_offset", float, [0.0], "see command_scale", True),
                dim,
            )
        )
        self.joint_names = declare(self, "joint_names", str, [], "joint names (joint_trajectory)", True)
        if self.command_type == "joint_trajectory" and len(self.joint_names) != dim:
            raise ConfigError(
                f"command_type 'joint_trajectory' needs {dim} joint_names, got {len(self.joint_names)}"
            )
        self.frame_id = declare(self, "frame_id", str, "world", "frame of twist commands")
        self.control_hz = 1.0 / self.period
        self.filter = SafetyFilter(cfg)
        self.lock = threading.Lock()
        self.last_logged = ""  # the hold label last logged (a warning on each change into a hold)
        self.last_log_time = -np.inf
        self.closed = False

        msg_type = {"forward": Float64MultiArray, "joint_trajectory": JointTrajectory, "twist": TwistStamped}
        self.cmd_pub = self.create_publisher(
            msg_type[self.command_type], topic or DEFAULT_TOPICS[self.command_type], command_qos(10)
        )
        self.exec_pub = self.create_publisher(Float32MultiArray, "/robot_rl/executed_action", command_qos(10))
        self.source_pub = self.create_publisher(String, "/robot_rl/command_source", command_qos(10))
        self.create_subscription(Float32MultiArray, "/robot_rl/action", self._on_policy, command_qos(1))
        self.create_subscription(
            Float32MultiArray, "/robot_rl/teleop/action", self._on_teleop, command_qos(1)
        )
        self.create_subscription(Bool, "/robot_rl/intervention", self._on_intervention, command_qos(1))
        if box_low:
            self.create_subscription(PointStamped, tcp_topic, self._on_tcp, sensor_qos())
        self.create_service(SetBool, "/robot_rl/estop", self._on_estop)
        # safety timers run on the steady clock: sim time (use_sim_time) must not stop them
        steady = RosClock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(self.period, self._on_tick, clock=steady)
        self.create_timer(min(0.01, cfg.watchdog_s / 4), self._on_watchdog, clock=steady)
        self.get_logger().info(
            f"command_mux: {self.command_type} -> {topic or DEFAULT_TOPICS[self.command_type]} at "
            f"{self.control_hz:g} Hz, hold after {1e3 * cfg.watchdog_s:.0f} ms without an action, "
            f"workspace box {'on (' + tcp_topic + ')' if box_low else 'off'}"
        )

    # --- callbacks: all on the default (mutually exclusive) group, so no two run at once -------------
    def _on_policy(self, msg: Float32MultiArray) -> None:
        stamp = obs_stamp_of([d.label for d in msg.layout.dim])
        with self.lock:
            self._publish(self.filter.on_action(np.asarray(msg.data), "policy", time.monotonic(), stamp))

    def _on_teleop(self, msg: Float32MultiArray) -> None:
        with self.lock:
            self._publish(self.filter.on_action(np.asarray(msg.data), "teleop", time.monotonic()))

    def _on_intervention(self, msg: Bool) -> None:
        with self.lock:
            self.filter.set_intervention(bool(msg.data), time.monotonic())

    def _on_tcp(self, msg: PointStamped) -> None:
        with self.lock:
            self.filter.set_tcp(np.array([msg.point.x, msg.point.y, msg.point.z]), time.monotonic())

    def _on_estop(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        with self.lock:
            self._publish(self.filter.set_estop(bool(request.data), time.monotonic()))  # hold now
        response.success = True
        response.message = "e-stop latched" if request.data else "e-stop released"
        self.get_logger().warning(response.message)
        return response

    def _on_tick(self) -> None:
        with self.lock:
            self._publish(self.filter.on_tick(time.monotonic()))

    def _on_watchdog(self) -> None:
        with self.lock:
            self._publish(self.filter.check_watchdog(time.monotonic()))

    def close(self) -> None:
        """One last hold before the node goes (idempotent: a second signal during teardown is harmless)."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            # the context may already be shut down (an external shutdown): then there is nothing to publish on
            with contextlib.suppress(Exception):
                self._publish(self.filter.shutdown())

    # --- output --------------------------------------------------------------------------------------
    def _publish(self, out: SafetyOutput | None) -> None:
        if out is None:
            return
        a = out.action
        if self.command_type == "forward":
            msg = Float64MultiArray(data=scale_command(a, self.scale, self.offset).tolist())
            if out.stamp is not None and out.label == "policy":  # a fresh policy answer: say to what
                msg.layout.dim = [
                    MultiArrayDimension(label=obs_stamp_label(out.stamp), size=a.size, stride=a.size)
                ]
        elif self.command_type == "joint_trajectory":
            msg = JointTrajectory(joint_names=self.joint_names)
            msg.header.stamp = self.get_clock().now().to_msg()
            point = JointTrajectoryPoint(positions=scale_command(a, self.scale, self.offset).tolist())
            point.time_from_start.nanosec = int(self.period * 1e9)  # reach it within one control period
            msg.points = [point]
        else:
            msg = action_to_twist(a, self.filter.cfg.ee_scale, self.control_hz)
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.header.frame_id = self.frame_id
        self.cmd_pub.publish(msg)
        label = out.label
        executed = Float32MultiArray(data=a.astype(np.float32).tolist())
        # who commanded it travels in the same message (the dimension label), so a consumer pairs
        # action and source exactly; /robot_rl/command_source repeats it for simple listeners
        executed.layout.dim = [MultiArrayDimension(label=f"source:{label}", size=a.size, stride=a.size)]
        self.exec_pub.publish(executed)
        self.source_pub.publish(String(data=label))
        self._log_hold(out)

    def _log_hold(self, out: SafetyOutput) -> None:
        """One warning when the output changes into a hold (at most one per second), one info line when
        commands come back; never a line per rejected message."""
        label = out.label
        if out.source != "hold":
            if self.last_logged:
                self.get_logger().info(f"{label} commands again after {self.last_logged}")
                self.last_logged = ""
            return
        if label == self.last_logged or out.reason in ("startup", "estop", "shutdown"):
            return
        now = time.monotonic()
        if now - self.last_log_time >= 1.0:
            self.last_log_time = now
            self.last_logged = label
            self.get_logger().warning(f"holding: {label} ({HOLD_REASONS[out.reason]})")


def main() -> None:
    run_node("command_mux", CommandMuxNode)


if __name__ == "__main__":
    main()
