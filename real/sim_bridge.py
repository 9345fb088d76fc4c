"""``robot-rl-sim-bridge``: a ``robot_rl.sim`` task presented as a ROS 2 robot (ARCHITECTURE §3.5).

Publishes ``/joint_states`` (arm joints + fingers, rad and rad/s), ``/robot_rl/observation/state``
(JointState whose ``position`` is the task's full state vector, names ``state_<i>``: the object state a
perception stack would give on a real robot), ``/robot_rl/tcp_position`` (PointStamped, m, world),
``/robot_rl/success`` (Bool), ``/robot_rl/reward`` (Float32), ``/robot_rl/task`` (String, transient
local), ``/robot_rl/episode_event`` (std_msgs/Header, transient local: ``frame_id`` is ``start``,
``terminated`` or ``truncated``, ``stamp`` the stamp of the episode's first / last observation; the
recorder cuts episodes on it) and ``/clock`` (sim time = steps x control period). Accepts the
command topic a ros2_control robot accepts, chosen by ``command_type`` (same names and scaling as the
command mux); offers ``/robot_rl/reset`` (Trigger). With ``cameras`` set it also publishes
``/robot_rl/camera/<name>/image_raw`` (sensor_msgs/Image, rgb8, ``image_size`` square) every
``control_hz / camera_hz`` steps and at each episode start, stamped with the stamp of the observation
it was rendered at (so a policy pairs image and state by stamp).

Steps in real time at ``control_hz`` with the latest command; without a command yet (or after a
reset) it sends the neutral action (no motion, gripper unchanged). With ``lockstep:=true`` it steps
once per received command instead, as fast as the graph answers (the policy node with
``act_on_state:=true`` answers every observation), so a rollout through the topics is the same
rollout as in-process; when no command comes for ``lockstep_timeout_s`` (wall time) it steps with
the held command, so a dead policy still shows up as the mux's hold commands. ``/clock`` counts
sim time in both modes; header stamps are wall time (the watchdogs and stale-observation checks of
the other nodes run on wall time: a safety timer must not stop when the simulation stalls).

The first episode starts when the graph is ready, not when the bridge is: every topic of
``wait_for_topics`` (default ``/robot_rl/action``: the policy node creates its publisher once its
bundle has loaded) has a publisher, something subscribes the observation and a publisher (the command
mux) is matched to the command topic. Until then the sim does not step and commands are ignored; a log
line says what it waits for. After ``startup_timeout_s`` it starts anyway, with a warning naming what
is missing (0 = do not wait). A ``/robot_rl/reset`` call starts an episode at once.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from robot_rl.core.optional import require

require("rclpy", "the sim_bridge node")

from builtin_interfaces.msg import Time  # noqa: E402
from geometry_msgs.msg import PointStamped, TwistStamped  # noqa: E402
from rclpy.clock import Clock as RosClock  # noqa: E402
from rclpy.clock import ClockType  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Bool, Float32, Float64MultiArray, Header, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from robot_rl.real.command_mux import COMMAND_TYPES, DEFAULT_TOPICS, _broadcast  # noqa: E402
from robot_rl.real.conversions import image_to_msg, obs_stamp_of, twist_to_delta, unscale_command  # noqa: E402
from robot_rl.real.node_utils import (  # noqa: E402
    EPISODE_EVENT_TOPIC,
    EPISODE_START_FRAME,
    ConfigError,
    choice,
    command_qos,
    declare,
    latched_qos,
    positive,
    run_node,
    stamp_from_s,
    stamp_to_s,
)


class SimBridgeNode(Node):
    """Parameters: task, control_hz, seed, command_type, command_topic, command_scale, command_offset,
    ee_scale (twist), auto_reset, terminate_on_success, publish_clock, lockstep, lockstep_timeout_s,
    cameras, image_size, camera_hz, wait_for_topics, startup_timeout_s."""

    def __init__(self) -> None:
        super().__init__("robot_rl_sim_bridge")
        task = declare(self, "task", str, "robot_rl/Lift-v0", "gymnasium id of a robot_rl.sim task")
        self.control_hz = positive("control_hz", declare(self, "control_hz", float, 20.0, "control rate, Hz"))
        seed = declare(self, "seed", int, 0, "seed of the first reset")
        self.command_type = choice(
            "command_type",
            declare(self, "command_type", str, "forward", "forward | joint_trajectory | twist"),
            COMMAND_TYPES,
        )
        topic = declare(self, "command_topic", str, "", "command topic; '' = the controller default")
        self.auto_reset = declare(self, "auto_reset", bool, False, "reset when an episode ends")
        terminate_on_success = declare(
            self, "terminate_on_success", bool, True, "end the episode at the first success"
        )
        self.publish_clock = declare(self, "publish_clock", bool, True, "publish sim time on /clock")
        self.lockstep = declare(self, "lockstep", bool, False, "step once per command, as fast as possible")
        self.lockstep_timeout = positive(
            "lockstep_timeout_s",
            declare(self, "lockstep_timeout_s", float, 0.5, "lockstep: step anyway after this long, s"),
        )
        self.ee_scale = positive("ee_scale", declare(self, "ee_scale", float, 0.04, "m per unit (twist)"))
        self.cameras = declare(self, "cameras", str, [], "cameras to publish (front, wrist)", True)
        self.image_size = declare(self, "image_size", int, 84, "camera image height = width, pixels")
        camera_hz = positive("camera_hz", declare(self, "camera_hz", float, 5.0, "camera rate, Hz"))
        if self.image_size < 8:
            raise ConfigError(f"parameter 'image_size' must be >= 8, got {self.image_size}")
        self.camera_every = max(1, round(self.control_hz / camera_hz))  # steps between images
        self.wait_for_topics = declare(
            self,
            "wait_for_topics",
            str,
            ["/robot_rl/action"],
            "topics that need a publisher before the first episode starts",
            True,
        )
        self.startup_timeout = declare(
            self, "startup_timeout_s", float, 60.0, "start anyway after this long, s; 0 = do not wait"
        )
        if self.startup_timeout < 0:
            raise ConfigError(f"parameter 'startup_timeout_s' must be >= 0, got {self.startup_timeout}")
        try:
            import gymnasium as gym

            import robot_rl  # noqa: F401  (registers the gymnasium ids)

            self.env = gym.make(task, terminate_on_success=terminate_on_success).unwrapped
        except Exception as err:  # unknown id, missing mujoco, bad kwargs: one line
            raise ConfigError(
                f"cannot make task {task!r}: {str(err).splitlines()[0] if str(err) else err!r}"
            ) from err
        from robot_rl.sim.arm import ARM_JOINTS, FINGER_JOINTS
        from robot_rl.sim.base import CAMERAS

        for cam in self.cameras:
            choice("cameras", cam, CAMERAS)
        if self.cameras and not hasattr(self.env, "render_camera"):
            raise ConfigError(f"task {task!r} cannot render cameras over ROS")

        self.joint_names = [*ARM_JOINTS, *FINGER_JOINTS]
        self.dim = int(self.env.action_space.shape[0])
        scale_list = declare(self, "command_scale", float, [1.0], "physical = offset + scale * action", True)
        offset_list = declare(self, "command_offset", float, [0.0], "see command_scale", True)
        self.scale = np.array(_broadcast("command_scale", scale_list, self.dim))
        self.offset = np.array(_broadcast("command_offset", offset_list, self.dim))
        self.lock = threading.Lock()
        self.seed = seed
        self.steps = 0
        self.sim_time = 0.0
        self.done = False
        self.commands_received = 0
        self.stale_commands = 0
        self.last_stamp_s = -1.0
        self._reset()

        msg_type = {"forward": Float64MultiArray, "joint_trajectory": JointTrajectory, "twist": TwistStamped}
        self.command_topic = topic or DEFAULT_TOPICS[self.command_type]
        self.command_sub = self.create_subscription(
            msg_type[self.command_type], self.command_topic, self._on_command, command_qos(10)
        )
        self.joint_pub = self.create_publisher(JointState, "/joint_states", command_qos(10))
        self.state_pub = self.create_publisher(JointState, "/robot_rl/observation/state", command_qos(10))
        self.tcp_pub = self.create_publisher(PointStamped, "/robot_rl/tcp_position", command_qos(10))
        self.success_pub = self.create_publisher(Bool, "/robot_rl/success", command_qos(10))
        self.reward_pub = self.create_publisher(Float32, "/robot_rl/reward", command_qos(10))
        self.task_pub = self.create_publisher(String, "/robot_rl/task", latched_qos())
        self.event_pub = self.create_publisher(Header, EPISODE_EVENT_TOPIC, latched_qos())
        self.image_pubs = {
            cam: self.create_publisher(Image, f"/robot_rl/camera/{cam}/image_raw", command_qos(2))
            for cam in self.cameras
        }
        self.episode_steps = 0
        self.clock_pub = (
            self.create_publisher(Clock, "/clock", command_qos(10)) if self.publish_clock else None
        )
        self.create_service(Trigger, "/robot_rl/reset", self._on_reset)
        steady = RosClock(clock_type=ClockType.STEADY_TIME)
        self.started = False  # the first episode waits for the graph (_on_ready_check)
        self.created_at = time.monotonic()
        self.last_waiting_log = ""
        self.ready_timer = self.create_timer(0.05, self._on_ready_check, clock=steady)
        if self.lockstep:  # commands drive the steps; a steady (wall) timer covers silences
            self.create_timer(self.lockstep_timeout / 4, self._on_lockstep_timer, clock=steady)
        else:
            self.create_timer(1.0 / self.control_hz, self._on_tick)
        self.get_logger().info(
            f"sim_bridge: {task} at {self.control_hz:g} Hz"
            f"{' (lockstep: one step per command)' if self.lockstep else ''}, {self.command_type} "
            f"commands on {topic or DEFAULT_TOPICS[self.command_type]}"
        )

    def _reset(self) -> None:
        self.obs, self.info = self.env.reset(seed=self.seed)
        self.episode_seed = self.seed
        self.episode_steps = 0
        self.seed += 1
        self.done = False
        # neutral: no motion on the delta dims, the gripper as the reset left it
        self.command = np.zeros(self.dim)
        self.command[-1] = float(self.env._initial_gripper())

    def close(self) -> None:
        """Free the simulator (and its GL renderers, in the thread that made them) before shutdown."""
        self.env.close()

    def _on_command(self, msg) -> None:
        if self.command_type == "twist":
            a = self.command.copy()
            a[:3] = twist_to_delta(msg, self.ee_scale, self.control_hz)
        else:
            values = (
                msg.points[-1].positions
                if self.command_type == "joint_trajectory" and msg.points
                else msg.data
            )
            if len(values) != self.dim:
                self.get_logger().warning(
                    f"ignoring a command of {len(values)} values; expected {self.dim}",
                    throttle_duration_sec=1.0,
                )
                return
            a = unscale_command(np.asarray(values), self.scale, self.offset)
        if not np.all(np.isfinite(a)):
            self.get_logger().warning("ignoring a non-finite command", throttle_duration_sec=1.0)
            return
        with self.lock:
            if not self.started:
                return  # no episode yet (the mux's startup holds): nothing to step
            answers = (
                obs_stamp_of([d.label for d in msg.layout.dim]) if self.command_type == "forward" else None
            )
            if self.lockstep and answers is not None and abs(answers - self.last_stamp_s) > 1e-6:
                self.stale_commands += 1  # computed for an older observation (e.g. the last episode's)
                return
            self.command = np.clip(a, -1.0, 1.0)
            self.commands_received += 1
            if self.lockstep:
                if not self.done:
                    self._step()
                elif self.auto_reset:  # the command answered the last observation: start over
                    self._reset()
                    self._publish_start()

    def _on_reset(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self.lock:
            if self.started:
                self._reset()
            else:  # the first episode: the reset made at construction (seed `seed`) is the one
                self._mark_started("a /robot_rl/reset call")
            self._publish_start()
        response.success = True
        response.message = f"reset: {self.info.get('task', '')}"
        return response

    def _missing(self) -> list[str]:
        """What the graph still lacks before the first episode (empty = ready)."""
        missing = [f"a publisher on {t}" for t in self.wait_for_topics if self.count_publishers(t) < 1]
        if self.command_sub.get_publisher_count() < 1:
            missing.append(f"a command publisher (the command mux) on {self.command_topic}")
        if self.state_pub.get_subscription_count() < 1:
            missing.append("a subscriber of /robot_rl/observation/state")
        return missing

    def _on_ready_check(self) -> None:
        with self.lock:
            if self.started:
                return
            missing = self._missing()
            waited = time.monotonic() - self.created_at
            if not missing:
                self._mark_started(f"graph ready after {waited:.1f} s")
            elif waited >= self.startup_timeout:
                self.get_logger().warning(
                    f"graph not ready after {waited:.0f} s (missing: {'; '.join(missing)}): starting anyway"
                )
                self._mark_started("startup timeout")
            else:
                text = "; ".join(missing)
                if text != self.last_waiting_log:
                    self.last_waiting_log = text
                    self.get_logger().info(f"waiting for {text} before the first episode")
                return
            self._publish_start()  # the episode reset at construction (seed `seed`)

    def _mark_started(self, why: str) -> None:
        self.started = True
        self.ready_timer.cancel()
        self.get_logger().info(f"{why}: the first episode starts (seed {self.episode_seed})")

    def _on_tick(self) -> None:
        with self.lock:
            if not self.started:
                return
            if self.done:
                if not self.auto_reset:
                    self._publish_state(0.0, bool(self.info.get("is_success", False)))
                    return
                self._reset()
                self._publish_start()
                return  # the first step comes next tick, with the command that answers this observation
            self._step()

    def _on_lockstep_timer(self) -> None:
        with self.lock:
            if not self.started:
                return
            if time.monotonic() - self.last_step_wall < self.lockstep_timeout:
                return
            if self.done:  # keep /robot_rl/success alive; a reset comes from the service (or auto_reset)
                self.last_step_wall = time.monotonic()
                self._publish_state(0.0, bool(self.info.get("is_success", False)))
                return
            self._step()

    def _step(self) -> None:
        """One control step with the held command (call with the lock held)."""
        self.obs, reward, terminated, truncated, self.info = self.env.step(self.command)
        self.last_step_wall = time.monotonic()
        self.steps += 1
        self.episode_steps += 1
        self.sim_time += 1.0 / self.control_hz
        self.done = bool(terminated or truncated)
        stamp = self._publish_state(float(reward), bool(self.info.get("is_success", False)))
        if self.done:
            self._publish_event("terminated" if terminated else "truncated", stamp)

    def _publish_start(self) -> None:
        """The first observation of an episode, announced before it is published, so a policy node resets
        its chunk queue before it acts on it (the recorder matches the event by stamp in any order)."""
        stamp = self.get_clock().now().to_msg()
        self.task_pub.publish(String(data=self.info.get("task", "")))  # each episode has its own instruction
        self._publish_event("start", stamp)
        self._publish_state(0.0, False, stamp, first=True)
        self.last_step_wall = time.monotonic()

    def _publish_event(self, kind: str, stamp: Time) -> None:
        event = Header(frame_id=kind)
        event.stamp = stamp
        self.event_pub.publish(event)

    def _publish_state(
        self, reward: float, success: bool, stamp: Time | None = None, first: bool = False
    ) -> Time:
        """Publish the current observation (+ reward and success); returns its header stamp. The first
        observation of an episode says so in its frame_id (``episode_start:<reset seed>``)."""
        stamp = stamp if stamp is not None else self.get_clock().now().to_msg()
        self.last_stamp_s = stamp_to_s(stamp)
        arm, d = self.env.arm, self.env.data
        # the tcp before the state: the mux clamps the answer to this state with this tcp (the workspace
        # box), so it must not arrive after the answer (a lockstep rollout would then differ from the
        # in-process one); then the policy's input, before everything else (each publish costs ~0.1 ms
        # of Python, and all of it counts as latency)
        tcp = PointStamped()
        tcp.header.stamp, tcp.header.frame_id = stamp, "world"
        tcp.point.x, tcp.point.y, tcp.point.z = (float(v) for v in d.site_xpos[arm.tcp])
        self.tcp_pub.publish(tcp)
        state = np.asarray(self.obs["state"], dtype=np.float64)
        st = JointState(name=[f"state_{i}" for i in range(state.size)], position=state.tolist())
        st.header.stamp = stamp
        st.header.frame_id = f"{EPISODE_START_FRAME}:{self.episode_seed}" if first else ""
        self.state_pub.publish(st)
        js = JointState(name=self.joint_names)
        js.header.stamp = stamp
        js.position = [*d.qpos[arm.qs].tolist(), *d.qpos[arm.finger_qadr].tolist()]
        js.velocity = [*d.qvel[arm.ds].tolist(), *d.qvel[arm.finger_dadr].tolist()]
        self.joint_pub.publish(js)
        if self.clock_pub is not None:
            self.clock_pub.publish(Clock(clock=stamp_from_s(self.sim_time)))
        self.success_pub.publish(Bool(data=success))
        self.reward_pub.publish(Float32(data=reward))
        if self.image_pubs and self.episode_steps % self.camera_every == 0:
            for cam, pub in self.image_pubs.items():
                img = image_to_msg(self.env.render_camera(cam, self.image_size, self.image_size), Image())
                img.header.stamp, img.header.frame_id = stamp, f"{cam}_camera"
                pub.publish(img)
        return stamp


def main() -> None:
    # one thread: the camera renderer's GL context belongs to the thread that created it (EGL)
    run_node("sim_bridge", SimBridgeNode)


if __name__ == "__main__":
    main()
