"""``robot-rl-policy-node``: a policy bundle acting on the ROS graph (ARCHITECTURE §3.5).

Subscriptions only cache the latest message (sensor callback group). A timer at ``control_hz`` on its
own callback group builds the observation from the cached state, drops it when its header stamp is
older than ``max_obs_age_s`` (or when nothing new arrived since the last step), runs ``policy.act``
(the bundle's own chunk queue does the chunk scheduling) and publishes ``/robot_rl/action``
(Float32MultiArray, normalized). With a MultiThreadedExecutor a slow model never blocks the sensor
callbacks; a step that overruns the period counts as a deadline miss.

Observation: ``state_topic`` is a JointState; with ``joint_names`` set the state vector is the
``position`` of those joints in that order (a real robot whose bundle state is proprio only),
otherwise the whole ``position`` array (the sim bridge's ``/robot_rl/observation/state``).
Timing is logged every ``report_every_s`` (inference ms p50/max, observation age ms, misses) and
published on ``/robot_rl/policy/inference_ms`` (Float32).

With ``act_on_state:=true`` there is no timer: every new observation is answered at once (one action
per observation: the sim bridge's lockstep mode, or a robot driver that publishes at its own rate).
A ``start`` on ``/robot_rl/episode_event`` resets the policy (its chunk queue), so each episode starts
with a fresh chunk as in evaluation.

Camera bundles: each camera ``<name>`` of the bundle comes on ``/robot_rl/camera/<name>/image_raw``
(sensor_msgs/Image, rgb8/bgr8, the bundle's size); a step uses the latest image of every camera when
its stamp is within ``max_image_age_s`` of the state's stamp, and publishes nothing otherwise.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from robot_rl.core.optional import require

require("rclpy", "the policy node")

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Float32, Float32MultiArray, Header, MultiArrayDimension, String  # noqa: E402

from robot_rl.real.conversions import joint_state_vector, msg_to_image, obs_stamp_label  # noqa: E402
from robot_rl.real.node_utils import (  # noqa: E402
    EPISODE_EVENT_TOPIC,
    EPISODE_START_FRAME,
    ConfigError,
    command_qos,
    declare,
    latched_qos,
    positive,
    run_node,
    sensor_qos,
    stamp_to_s,
)


class PolicyNode(Node):
    """Parameters: bundle (required), device, torch_threads, control_hz (0 = the bundle's rate),
    max_obs_age_s, state_topic, joint_names, startup_wait_s, report_every_s, act_on_state,
    max_image_age_s."""

    def __init__(self) -> None:
        super().__init__("robot_rl_policy")
        bundle = declare(self, "bundle", str, "", "path of a policy bundle folder")
        if not bundle:
            raise ConfigError("parameter 'bundle' is required (-p bundle:=<folder>)")
        device = declare(self, "device", str, "cpu", "torch device")
        threads = declare(self, "torch_threads", int, 1, "CPU threads for inference; 0 = torch's default")
        if threads < 0:
            raise ConfigError(f"parameter 'torch_threads' must be >= 0, got {threads}")
        if threads > 0:
            import torch

            # one thread: a small policy's latency is dominated by thread hand-offs, and the other cores
            # belong to the robot's drivers and the rest of the graph
            torch.set_num_threads(threads)
        from robot_rl.core.errors import BundleError
        from robot_rl.deploy.bundle import load_policy

        try:
            self.policy = load_policy(bundle, device=device)
        except (BundleError, RuntimeError) as err:
            raise ConfigError(f"cannot load bundle: {err}") from err
        meta = self.policy.bundle_meta
        hz = declare(self, "control_hz", float, 0.0, "control rate, Hz; 0 = the bundle's control_hz")
        self.control_hz = positive("control_hz", hz if hz > 0 else float(meta.get("control_hz", 20.0)))
        self.max_age = positive(
            "max_obs_age_s", declare(self, "max_obs_age_s", float, 0.2, "drop older obs, s")
        )
        state_topic = declare(self, "state_topic", str, "/robot_rl/observation/state", "JointState topic")
        self.joint_names = declare(self, "joint_names", str, [], "joints forming the state vector", True)
        self.report_every = declare(self, "report_every_s", float, 5.0, "timing log period, s")
        act_on_state = declare(self, "act_on_state", bool, False, "answer each observation (no timer)")
        self.state_dim = int(meta["obs_spec"]["state_dim"])
        if self.joint_names and len(self.joint_names) != self.state_dim:
            raise ConfigError(
                f"{len(self.joint_names)} joint_names for a bundle whose state has {self.state_dim} dims"
            )
        wait_s = declare(
            self, "startup_wait_s", float, 10.0, "joint_names: wait this long for a state to check them"
        )
        if self.joint_names:
            self._check_joint_names(state_topic, wait_s)
        # camera -> (H, W, 3) the bundle was trained on; images come on /robot_rl/camera/<name>/image_raw
        self.cameras = {cam: tuple(shape) for cam, shape in meta["obs_spec"].get("cameras", {}).items()}
        self.max_image_age = positive(
            "max_image_age_s",
            declare(self, "max_image_age_s", float, 0.5, "max |state stamp - image stamp|, s"),
        )
        self.action_dim = int(meta["action_spec"]["dim"])

        self.lock = threading.Lock()
        self.latest: JointState | None = None
        self.images: dict[str, Image] = {}  # camera -> latest message
        self.last_used_stamp: float | None = None
        self.reset_stamp: float | None = None  # the episode start the policy was last reset for
        self.infer_ms: list[float] = []
        self.ages_ms: list[float] = []
        self.misses = self.stale = self.steps = 0
        self.next_report = time.monotonic() + self.report_every
        self.fatal: str | None = None

        # timer mode: the sensor group caches messages on a second thread while the model runs; answering
        # each observation needs one thread only (and rclpy's multi-threaded executor costs latency)
        self.executor_threads = 0 if act_on_state else 2
        sensors = MutuallyExclusiveCallbackGroup()
        control = MutuallyExclusiveCallbackGroup()  # acting and resetting never overlap
        # created before the state subscription: when an episode's start event and its first observation
        # are ready together, the executor takes them in creation order (reset, then act)
        self.create_subscription(
            Header, EPISODE_EVENT_TOPIC, self._on_episode_event, latched_qos(10), callback_group=control
        )
        self.create_subscription(
            JointState,
            state_topic,
            self._on_state_and_act if act_on_state else self._on_state,
            # every observation matters when each one is answered: reliable, as the sim bridge publishes
            # (after a slow step, queued observations older than max_obs_age_s are skipped)
            command_qos(10) if act_on_state else sensor_qos(),
            callback_group=control if act_on_state else sensors,
        )
        self.create_subscription(
            String, "/robot_rl/task", self._on_task, latched_qos(), callback_group=sensors
        )
        for cam in self.cameras:
            self.create_subscription(
                Image,
                f"/robot_rl/camera/{cam}/image_raw",
                lambda msg, cam=cam: self._on_image(cam, msg),
                sensor_qos(),
                callback_group=sensors,
            )
        self.action_pub = self.create_publisher(Float32MultiArray, "/robot_rl/action", command_qos(1))
        self.timing_pub = self.create_publisher(Float32, "/robot_rl/policy/inference_ms", command_qos(10))
        if not act_on_state:
            self.create_timer(1.0 / self.control_hz, self._on_timer, callback_group=control)
        self.policy.reset()
        self.get_logger().info(
            f"policy: {meta['policy']} bundle {bundle} "
            f"{'on every observation' if act_on_state else f'at {self.control_hz:g} Hz'}, state from "
            f"{state_topic}"
        )

    def _check_joint_names(self, topic: str, wait_s: float) -> None:
        """Configure-time check that every joint of ``joint_names`` is in the robot's state messages: a
        mismatch stops the node here with one line, not at the first control step. Without a message
        within ``wait_s`` (the driver not up yet) the check happens at the first step instead."""
        from rclpy.wait_for_message import wait_for_message

        ok, msg = wait_for_message(JointState, self, topic, qos_profile=sensor_qos(), time_to_wait=wait_s)
        if not ok:
            self.get_logger().warning(f"no JointState on {topic} within {wait_s:g} s: joint_names unchecked")
            return
        try:
            joint_state_vector(list(msg.name), list(msg.position), self.joint_names)
        except KeyError as err:
            raise ConfigError(str(err).strip("'\"")) from err

    def _on_state(self, msg: JointState) -> None:
        with self.lock:
            self.latest = msg

    def _on_image(self, camera: str, msg: Image) -> None:
        with self.lock:
            self.images[camera] = msg

    def _pixels(self, state_stamp: float) -> dict[str, np.ndarray] | None:
        """``pixels/<camera>`` arrays for the bundle's cameras, each from the latest image within
        ``max_image_age_s`` of the state's stamp; None when one is missing or too far off."""
        out = {}
        with self.lock:
            images = dict(self.images)
        for cam, shape in self.cameras.items():
            msg = images.get(cam)
            if msg is None or abs(state_stamp - stamp_to_s(msg.header.stamp)) > self.max_image_age:
                return None
            image = msg_to_image(msg)  # ValueError on a bad encoding/size: fatal, below
            if image.shape != shape:
                raise ValueError(f"camera {cam!r} sends {image.shape} images; the bundle expects {shape}")
            out[f"pixels/{cam}"] = image
        return out

    def _on_state_and_act(self, msg: JointState) -> None:
        self._on_state(msg)
        self._on_timer()

    def _on_episode_event(self, msg: Header) -> None:
        stamp = stamp_to_s(msg.stamp)
        # reset once per episode: not again when the marked first observation already did it
        if msg.frame_id == "start" and stamp != self.reset_stamp and stamp != self.last_used_stamp:
            self.policy.reset()
            self.reset_stamp = stamp

    def _on_task(self, msg: String) -> None:
        self.get_logger().info(f"task: {msg.data!r}")

    def _state(self, msg: JointState) -> np.ndarray:
        if self.joint_names:
            return joint_state_vector(list(msg.name), list(msg.position), self.joint_names)
        state = np.asarray(msg.position, dtype=np.float64)
        if state.size != self.state_dim:
            raise KeyError(f"state message has {state.size} values; the bundle expects {self.state_dim}")
        return state

    def _on_timer(self) -> None:
        t0 = time.monotonic()
        with self.lock:
            msg = self.latest
        if msg is None:
            return
        stamp = stamp_to_s(msg.header.stamp)
        age = stamp_to_s(self.get_clock().now().to_msg()) - stamp
        if stamp == self.last_used_stamp or age > self.max_age:
            self.stale += 1  # nothing new, or too old: publish nothing, the mux watchdog decides
            return
        try:
            state = self._state(msg)
            pixels = self._pixels(stamp) if self.cameras else {}
        except (KeyError, ValueError) as err:
            if self.fatal is None:
                self.fatal = str(err).strip("'\"")
                self.get_logger().error(f"observation does not match the bundle: {self.fatal}")
            return
        if pixels is None:
            self.stale += 1  # no image close enough to this state yet: no action, the mux decides
            return
        first = msg.header.frame_id.startswith(EPISODE_START_FRAME)
        if first and stamp != self.reset_stamp:
            self.policy.reset()  # a new episode (its start event may not have arrived yet)
            self.reset_stamp = stamp
        self.last_used_stamp = stamp
        obs = {"state": state.astype(np.float32), **pixels}
        action = np.asarray(self.policy.act(obs), dtype=np.float32).reshape(-1)
        out = Float32MultiArray(data=action.tolist())
        # which observation this answers (the mux forwards it; a lockstep sim drops stale answers)
        out.layout.dim = [
            MultiArrayDimension(label=obs_stamp_label(stamp), size=action.size, stride=action.size)
        ]
        self.action_pub.publish(out)
        dt = time.monotonic() - t0
        self.steps += 1
        self.infer_ms.append(1e3 * dt)
        self.ages_ms.append(1e3 * max(age, 0.0))
        if dt > 1.0 / self.control_hz:
            self.misses += 1
        self.timing_pub.publish(Float32(data=float(1e3 * dt)))
        if time.monotonic() >= self.next_report:
            self._report()

    def _report(self) -> None:
        self.next_report = time.monotonic() + self.report_every
        if self.infer_ms:
            inf, age = np.array(self.infer_ms), np.array(self.ages_ms)
            self.get_logger().info(
                f"timing/inference_ms p50 {np.median(inf):.2f} max {inf.max():.2f}; timing/obs_age_ms p50 "
                f"{np.median(age):.2f} max {age.max():.2f}; steps {self.steps}, deadline misses "
                f"{self.misses}, stale/skipped {self.stale}"
            )
        self.infer_ms.clear()
        self.ages_ms.clear()


def main() -> None:
    run_node("policy", PolicyNode)


if __name__ == "__main__":
    main()
