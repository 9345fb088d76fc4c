"""``robot-rl-recorder``: writes what happens on the ROS graph into an episode store (ARCHITECTURE §4).

Subscribes (creation order = the order in which messages that arrive together are handled):
``/robot_rl/executed_action`` (Float32MultiArray, what the mux sent), ``/robot_rl/command_source``
(String: ``policy``, ``teleop``, ``hold:*``; one per executed action), ``/robot_rl/action``
(Float32MultiArray, the policy's proposal), ``/robot_rl/intervention`` (Bool), the state topic
(JointState, as the policy node reads it), ``/robot_rl/reward`` (Float32), ``/robot_rl/success``
(Bool), ``/robot_rl/task`` (String, transient local) and ``/robot_rl/episode_event`` (Header from
the sim bridge: ``start`` / ``terminated`` / ``truncated`` with the stamp of the first / last
observation).

A step is one observation message: the transition from observation ``k-1`` to observation ``k``
carries the last executed action received before observation ``k`` (the command the robot was
following), the policy's last proposal (the executed action when there was none), ``is_intervention``
= the mux labelled that executed action ``teleop`` (without a mux source: the intervention flag),
and the reward / success published right after observation ``k`` (the sim bridge publishes them
together; a reward that does not arrive counts as 0 and is counted in the metadata).

Episode boundaries: the sim bridge's ``start`` event (a ``/robot_rl/reset``) saves the episode in
progress and starts the next one at the reset observation; ``terminated`` / ``truncated`` saves it
ending at that observation and waits for the next ``start``; the service
``/robot_rl/recorder/end_episode`` (Trigger) saves the episode in progress and
``/robot_rl/recorder/discard`` (Trigger) drops it (re-record); after either the next observation
starts a new episode. Each episode is one atomic ``EpisodeStore.append``: killing the recorder loses
at most the episode in progress. On a clean shutdown (Ctrl-C) the episode in progress is saved when
``save_on_shutdown`` is true.

``format``: ``store`` (the default: the episode store above), ``mcap`` (a rosbag2 MCAP bag ``bag``
instead) or ``both``. The bag holds every message the recorder receives, CDR-serialized with its ROS 2
type and ``log_time`` = the time the callback got it (ns), in callback order, plus ``/joint_states``,
``/robot_rl/tcp_position`` and ``/robot_rl/teleop/action`` for viewing, and
``/robot_rl/recorder/event`` (String ``end_episode`` / ``discard``) when a service ends or drops an
episode. The chunk in progress is finished and fsync'ed at every episode end, so a killed recorder
leaves every finished episode readable (``robot-rl-bag import``, docs/data.md §5).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_rl.core.optional import require

require("rclpy", "the recorder node")

from geometry_msgs.msg import PointStamped  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Bool, Float32, Float32MultiArray, Header, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from robot_rl.real.conversions import joint_state_vector  # noqa: E402
from robot_rl.real.node_utils import (  # noqa: E402
    EPISODE_EVENT_TOPIC,
    ConfigError,
    choice,
    command_qos,
    declare,
    latched_qos,
    run_node,
    stamp_to_s,
)
from robot_rl.real.safety import label_source  # noqa: E402

SOURCES = ("robot", "sim_bridge")
FORMATS = ("store", "mcap", "both")
REWARD_SOURCES = ("auto", "sim", "classifier", "vlm", "human", "none")


@dataclass
class _Executed:
    """One executed action and the mux's label for it (filled when the source message arrives)."""

    action: np.ndarray
    label: str | None = None


@dataclass
class _Obs:
    stamp: float
    state: np.ndarray
    executed: _Executed | None = None  # the command followed since the previous observation (unused
    # on an episode's first observation)
    proposed: np.ndarray | None = None
    intervention_flag: bool = False
    reward: float | None = None
    success: bool | None = None


@dataclass
class _Episode:
    obs: list[_Obs] = field(default_factory=list)
    wall_start: float = field(default_factory=time.time)


class RecorderNode(Node):
    """Parameters: store (required unless format is mcap), format (store | mcap | both), bag (bag
    folder to create; "" = rosbag2_<date-time> here), source (robot | sim_bridge), control_hz (store
    fps), env_id, state_topic, joint_names, reward_source (auto | sim | classifier | vlm | human |
    none), min_steps, save_on_shutdown, compress."""

    def __init__(self) -> None:
        super().__init__("robot_rl_recorder")
        self.bag: Any = None
        root = declare(self, "store", str, "", "episode store folder (created when missing)")
        self.format = choice(
            "format",
            declare(self, "format", str, "store", "store | mcap (rosbag2 bag) | both"),
            FORMATS,
        )
        bag_path = declare(
            self, "bag", str, "", "rosbag2 bag folder to create (format mcap/both); '' = rosbag2_<date-time>"
        )
        if not root and self.format != "mcap":
            raise ConfigError("parameter 'store' is required (-p store:=<folder>) unless format is mcap")
        self.source = choice(
            "source", declare(self, "source", str, "robot", "robot | sim_bridge (episode 'source')"), SOURCES
        )
        fps = declare(self, "control_hz", float, 0.0, "control rate written as the store's fps; 0 = unset")
        if fps < 0:
            raise ConfigError(f"parameter 'control_hz' must be >= 0, got {fps}")
        env_id = declare(self, "env_id", str, "", "environment id written in the store's meta.json")
        state_topic = declare(self, "state_topic", str, "/robot_rl/observation/state", "JointState topic")
        self.joint_names = declare(self, "joint_names", str, [], "joints forming the state vector", True)
        self.reward_source = choice(
            "reward_source",
            declare(self, "reward_source", str, "auto", "auto = sim for sim_bridge, else none"),
            REWARD_SOURCES,
        )
        self.min_steps = declare(self, "min_steps", int, 1, "shorter episodes are dropped")
        if self.min_steps < 1:
            raise ConfigError(f"parameter 'min_steps' must be >= 1, got {self.min_steps}")
        self.save_on_shutdown = declare(
            self, "save_on_shutdown", bool, True, "save the episode in progress on a clean shutdown"
        )
        compress = declare(self, "compress", bool, False, "zip-deflate episode files (new stores only)")
        from robot_rl.core.errors import DataError
        from robot_rl.data.episode_store import EpisodeStore

        self.store: Any = None
        if self.format != "mcap":
            try:
                self.store = EpisodeStore(
                    root, create=True, fps=fps or None, env_id=env_id or None, compress=compress
                )
            except (DataError, OSError) as err:
                raise ConfigError(f"cannot open episode store: {err}") from err
        if self.format != "store":
            self._open_bag(bag_path, fps, env_id, state_topic)

        self.task = ""
        self.intervention = False
        self.executed: _Executed | None = None
        self.unlabelled: _Executed | None = None
        self.proposed: np.ndarray | None = None
        self.latest_success = False
        self.rewards_seen = False
        self.episode = _Episode()
        self.min_stamp = -np.inf  # observations older than the last 'start' event belong to no episode
        self.waiting_for_start = False  # after terminated/truncated: until the next 'start'
        self.held: deque[_Obs] = deque(maxlen=64)  # observations while waiting (the reset one may come first)
        self.last_obs: _Obs | None = None  # the most recent observation: the next reward/success is its
        self.end_at: tuple[float, str] | None = None  # terminal event seen before its observation
        self.saved = self.discarded = 0

        qos = command_qos(50)  # reliable and deep: the recorder must not drop steps
        sub = self._subscribe
        sub(Float32MultiArray, "/robot_rl/executed_action", self._on_executed, qos)
        sub(String, "/robot_rl/command_source", self._on_source, qos)
        sub(Float32MultiArray, "/robot_rl/action", self._on_proposed, qos)
        sub(Bool, "/robot_rl/intervention", self._on_intervention, qos)
        sub(JointState, state_topic, self._on_state, qos)
        sub(Float32, "/robot_rl/reward", self._on_reward, qos)
        sub(Bool, "/robot_rl/success", self._on_success, qos)
        sub(String, "/robot_rl/task", self._on_task, latched_qos())
        sub(Header, EPISODE_EVENT_TOPIC, self._on_event, latched_qos(10))
        if self.bag is not None:  # for viewing the recording (Foxglove, ros2 bag play): the bag only
            if state_topic != "/joint_states":
                sub(JointState, "/joint_states", None, qos)
            sub(PointStamped, "/robot_rl/tcp_position", None, qos)
            sub(Float32MultiArray, "/robot_rl/teleop/action", None, qos)
        self.create_service(Trigger, "/robot_rl/recorder/end_episode", self._on_end_episode)
        self.create_service(Trigger, "/robot_rl/recorder/discard", self._on_discard)
        where = [] if self.store is None else [f"{self.store.root} ({len(self.store)} episodes)"]
        where += [] if self.bag is None else [f"bag {self.bag.path}"]
        self.get_logger().info(
            f"recorder: {', '.join(where)}, source {self.source}, state from {state_topic}"
        )

    # --- the bag -------------------------------------------------------------------------------------
    def _open_bag(self, path: str, fps: float, env_id: str, state_topic: str) -> None:
        import json

        from robot_rl.core.errors import DataError

        try:
            from rclpy.serialization import serialize_message

            from robot_rl.data.rosbag import BagWriter
        except ImportError as err:
            raise ConfigError(f"format {self.format!r} needs the bag extra: {err}") from err
        self._serialize = serialize_message
        reward_source = self.reward_source
        if reward_source == "auto":
            reward_source = "sim" if self.source == "sim_bridge" else "none"
        custom = {
            "recorder": "robot_rl.real.recorder",
            "source": self.source,
            "reward_source": reward_source,
            "state_topic": state_topic,
            "joint_names": json.dumps(self.joint_names),
        }
        if fps:
            custom["fps"] = repr(float(fps))
        if env_id:
            custom["env_id"] = env_id
        path = path or time.strftime("rosbag2_%Y_%m_%d-%H_%M_%S")
        try:
            self.bag = BagWriter(path, custom=custom)
        except (DataError, OSError) as err:
            raise ConfigError(f"parameter 'bag': cannot create {path}: {err}") from err

    def _subscribe(self, msg_type: Any, topic: str, callback: Any, qos: Any) -> None:
        """A subscription whose messages also go into the bag (first, with their receive time)."""
        if self.bag is None:
            self.create_subscription(msg_type, topic, callback, qos)
            return
        module = msg_type.__module__.split(".")[0]  # e.g. std_msgs.msg._string -> std_msgs
        type_name = f"{module}/msg/{msg_type.__name__}"

        def on_message(msg: Any, info: Any) -> None:
            if not self.bag.closed:
                # log_time = when the middleware received it (as rosbag2), not when this callback runs:
                # a busy executor takes one message per topic per turn, so callback order can put an
                # observation after the action that answered it
                now = time.time_ns()
                received = int(info.get("received_timestamp") or 0)
                log_time = received if abs(received - now) < 10**10 else now
                source = int(info.get("source_timestamp") or 0) or log_time
                self.bag.write_raw(topic, type_name, self._serialize(msg), log_time, source)
            if callback is not None:
                callback(msg)

        self.create_subscription(msg_type, topic, on_message, qos)

    def _bag_event(self, event: str) -> None:
        """A recorder boundary (end_episode / discard) into the bag; the chunk is then flushed."""
        if self.bag is not None and not self.bag.closed:
            self.bag.write_raw(
                "/robot_rl/recorder/event",
                "std_msgs/msg/String",
                self._serialize(String(data=event)),
                time.time_ns(),
            )

    # --- inputs --------------------------------------------------------------------------------------
    def _on_executed(self, msg: Float32MultiArray) -> None:
        a = np.asarray(msg.data, dtype=np.float32)
        if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)):
            self.get_logger().warning("ignoring an empty or non-finite executed action")
            return
        label = next((d.label[7:] for d in msg.layout.dim if d.label.startswith("source:")), None)
        self.executed = _Executed(a, label)  # the mux labels the message itself (exact pairing)
        self.unlabelled = self.executed if label is None else None

    def _on_source(self, msg: String) -> None:
        if self.unlabelled is not None:  # the mux publishes one source right after each executed action
            self.unlabelled.label = msg.data
            self.unlabelled = None

    def _on_proposed(self, msg: Float32MultiArray) -> None:
        self.proposed = np.asarray(msg.data, dtype=np.float32)

    def _on_intervention(self, msg: Bool) -> None:
        self.intervention = bool(msg.data)

    def _on_task(self, msg: String) -> None:
        self.task = msg.data

    def _on_reward(self, msg: Float32) -> None:
        self.rewards_seen = True
        last = self.last_obs
        if last is not None and last.reward is None:  # the reward published with that observation
            last.reward = float(msg.data)

    def _on_success(self, msg: Bool) -> None:
        self.latest_success = bool(msg.data)
        last = self.last_obs
        if last is not None and last.success is None:
            last.success = bool(msg.data)

    def _state(self, msg: JointState) -> np.ndarray:
        if self.joint_names:
            return joint_state_vector(list(msg.name), list(msg.position), self.joint_names)
        return np.asarray(msg.position, dtype=np.float64)

    def _on_state(self, msg: JointState) -> None:
        stamp = stamp_to_s(msg.header.stamp)
        if stamp < self.min_stamp:
            return
        try:
            state = self._state(msg)
        except KeyError as err:
            self.get_logger().error(f"observation skipped: {str(err).strip(chr(39) + chr(34))}")
            return
        obs = self.last_obs = _Obs(stamp, state, self.executed, self.proposed, self.intervention)
        if self.waiting_for_start:
            self.held.append(obs)
            return
        if self.episode.obs and self.executed is None:  # nothing commanded yet: a new first observation
            self.episode.obs = []
        self.episode.obs.append(obs)
        if self.end_at is not None and stamp >= self.end_at[0]:
            _, kind = self.end_at
            self.end_at = None
            self._finish(kind)
            self.waiting_for_start = True

    def _on_event(self, msg: Header) -> None:
        stamp, kind = stamp_to_s(msg.stamp), msg.frame_id
        if kind == "start":
            self.end_at = None
            self.waiting_for_start = False
            # observations of the new episode that arrived before the event move over
            old = [o for o in self.episode.obs if o.stamp < stamp]
            new = [o for o in (*self.episode.obs, *self.held) if o.stamp >= stamp]
            self.held.clear()
            self.episode.obs = old
            self._finish("reset")
            self.episode.obs = new
            self.min_stamp = stamp
        elif kind in ("terminated", "truncated"):
            if stamp < self.min_stamp:
                return  # the end of an episode we never started (latched event at startup)
            if any(o.stamp >= stamp for o in self.episode.obs):
                # observations newer than the end already belong to the next episode: hold them for
                # its start event instead of dropping them
                later = [o for o in self.episode.obs if o.stamp > stamp]
                self.episode.obs = [o for o in self.episode.obs if o.stamp <= stamp]
                self._finish(kind)
                self.held.extend(later)
                self.waiting_for_start = True
            else:
                self.end_at = (stamp, kind)
        else:
            self.get_logger().warning(f"ignoring episode event {kind!r}")

    def _on_end_episode(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self._bag_event("end_episode")
        index, message = self._finish("end_episode")
        response.success = index is not None
        response.message = message
        return response

    def _on_discard(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        n = max(len(self.episode.obs) - 1, 0)
        self.episode = _Episode()
        self.discarded += 1
        self._bag_event("discard")
        self._flush_bag()
        response.success = True
        response.message = f"discarded {n} steps"
        self.get_logger().info(response.message)
        return response

    # --- output --------------------------------------------------------------------------------------
    def _finish(self, reason: str) -> tuple[int | None, str]:
        """Save the episode in progress (if long enough) and start an empty one; (index, message)."""
        try:
            return self._save(reason)
        finally:
            self._flush_bag()  # every finished episode is on disk in the bag, whatever happened to it

    def _flush_bag(self) -> None:
        if self.bag is not None and not self.bag.closed:
            try:
                self.bag.flush()
            except OSError as err:
                self.get_logger().error(f"bag flush failed: {err}")

    def _save(self, reason: str) -> tuple[int | None, str]:
        episode, self.episode = self.episode, _Episode()
        while len(episode.obs) > 1 and episode.obs[1].executed is None:  # before the first command
            episode.obs.pop(0)
        steps = episode.obs[1:]
        if len(steps) < self.min_steps:
            return None, f"nothing saved: {len(steps)} steps < min_steps {self.min_steps}"
        from robot_rl.core.errors import DataError

        if self.store is None:  # format mcap: the bag has it (the chunk is flushed by _finish)
            message = f"episode of {len(steps)} steps in the bag ({reason})"
            self.get_logger().info(message)
            return None, message
        try:
            record = self._record(episode, reason)
            index = self.store.append(record)
        except (DataError, OSError, ValueError) as err:
            message = f"episode of {len(steps)} steps not saved: {err}"
            self.get_logger().error(message)
            return None, message
        self.saved += 1
        message = (
            f"saved episode {index}: {record.length} steps, {int(record.is_intervention.sum())} "
            f"intervention steps, success {record.success} ({reason})"
        )
        self.get_logger().info(message)
        return index, message

    def _record(self, episode: _Episode, reason: str) -> Any:
        from robot_rl.data.episode_store import EpisodeRecord

        steps = episode.obs[1:]
        actions = np.stack([o.executed.action for o in steps])  # type: ignore[union-attr]
        proposed, bad_proposals = [], 0
        for o, a in zip(steps, actions):
            p = o.proposed
            if p is None or p.shape != a.shape or not np.all(np.isfinite(p)):
                bad_proposals += p is not None
                p = a
            proposed.append(p)
        labels = [o.executed.label for o in steps]  # type: ignore[union-attr]
        is_intervention = np.array(
            [
                label_source(lab) == "teleop" if lab is not None else o.intervention_flag
                for lab, o in zip(labels, steps)
            ]
        )
        rewards = np.array([0.0 if o.reward is None else o.reward for o in steps], dtype=np.float32)
        missing_rewards = sum(o.reward is None for o in steps)
        reward_source = self.reward_source
        if reward_source == "auto":
            reward_source = "sim" if self.source == "sim_bridge" else "none"
        if not self.rewards_seen:
            reward_source = "none"
        T = len(steps)
        terminated, truncated = np.zeros(T, dtype=bool), np.zeros(T, dtype=bool)
        (terminated if reason == "terminated" else truncated)[-1] = True
        last = steps[-1]
        return EpisodeRecord(
            observations={"state": np.stack([o.state for o in episode.obs])},
            actions=actions,
            proposed_actions=np.stack(proposed),
            rewards=rewards,
            terminated=terminated,
            truncated=truncated,
            is_demo=np.zeros(T, dtype=bool),
            is_intervention=is_intervention,
            reward_source=reward_source,
            source=self.source,
            task=self.task,
            success=bool(last.success if last.success is not None else self.latest_success),
            metadata={
                "recorder": "robot_rl.real.recorder",
                "end_reason": reason,
                "wall_start": episode.wall_start,
                "obs_stamps": [episode.obs[0].stamp, last.stamp],
                "command_source": [lab or "" for lab in labels],
                "missing_rewards": missing_rewards,
                "replaced_proposals": bad_proposals,
            },
        )

    # run_node keeps taking what already arrived for this long after a Ctrl-C, before close(): the
    # steps (and a start event) published before the signal belong to the episode saved on shutdown
    shutdown_drain_s = 0.3

    def close(self) -> None:
        """Called by run_node at shutdown: save the episode in progress when asked to; close the bag
        (an episode in progress that is not saved is marked discarded in it)."""
        if self.save_on_shutdown and not self.waiting_for_start:
            self._finish("shutdown")
        elif not self.waiting_for_start:
            self._bag_event("discard")
        if self.bag is not None:
            self.bag.close()


def main() -> None:
    run_node("recorder", RecorderNode)


if __name__ == "__main__":
    main()
