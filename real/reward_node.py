"""``robot-rl-reward-node``: a frames-based reward model on the ROS graph (docs/rewards.md, docs/ros.md).

Buffers the images of ``/robot_rl/camera/<camera>/image_raw`` for the episode in progress (episodes are
cut by ``/robot_rl/episode_event``; the instruction comes from ``/robot_rl/task``). When an episode ends
it hands the frames to a background scorer (:class:`robot_rl.rewards.async_scorer.AsyncRewardScorer`)
and returns at once: the control loop never waits for the model. A timer publishes each finished
result: ``reward_topic`` (Float32: 1.0 for a success verdict, else 0.0), ``success_topic`` (Bool) and
``/robot_rl/reward/result`` (String, JSON: score, progress, success probability, parse status, model
id and revision, latency, the episode's start stamp). A result that failed to parse or timed out is
published on the result topic only (``parse_ok: false``), never as a reward.

Only whole episodes are scored. An episode whose first image is stamped more than two frame periods
(``2 / fps``) after its ``start`` event began before the node was listening (or the camera missed its
start): a judge shown the tail of an episode would call it a failure, so it is logged and skipped.

Back-ends (``model``): ``standin`` (``path``: a trained stand-in directory), ``classifier`` (``path``:
an image success classifier from ``robot-rl-reward-train --camera``; it judges the episode's last
frame) or ``vlm`` (``path``: a local Qwen3-VL checkpoint).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np

from robot_rl.core.optional import require

require("rclpy", "the reward node")

from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Bool, Float32, Header, String  # noqa: E402

from robot_rl.real.conversions import msg_to_image  # noqa: E402
from robot_rl.real.node_utils import (  # noqa: E402
    EPISODE_EVENT_TOPIC,
    ConfigError,
    choice,
    command_qos,
    declare,
    latched_qos,
    positive,
    run_node,
    sensor_qos,
    stamp_to_s,
)

MODELS = ("standin", "classifier", "vlm")


def starts_whole(episode_start: float, first_frame_stamp: float | None, fps: float) -> bool:
    """True when the episode's first buffered frame (stamps in seconds) lies within two frame periods
    of its start, i.e. the clip shows the episode from its beginning."""
    return first_frame_stamp is not None and first_frame_stamp - episode_start <= 2.0 / fps


class RewardNode(Node):
    """Parameters: model, path, camera, fps, max_frames, reward_topic, success_topic, timeout_s."""

    def __init__(self, model_override: Any = None, parameter_overrides: list | None = None) -> None:
        super().__init__("robot_rl_reward", parameter_overrides=parameter_overrides or [])
        name = choice("model", declare(self, "model", str, "standin", "standin | classifier | vlm"), MODELS)
        path = declare(self, "path", str, "", "reward model directory")
        camera = declare(self, "camera", str, "front", "camera whose images are scored")
        self.fps = positive("fps", declare(self, "fps", float, 10.0, "frame rate of the camera, Hz"))
        self.max_frames = int(positive("max_frames", declare(self, "max_frames", int, 2000, "frames kept")))
        reward_topic = declare(self, "reward_topic", str, "/robot_rl/reward", "Float32 reward per episode")
        success_topic = declare(self, "success_topic", str, "/robot_rl/success", "Bool success per episode")
        timeout = declare(self, "timeout_s", float, 0.0, "flag results later than this (0 = never)")
        model = model_override if model_override is not None else self._load(name, path)
        from robot_rl.rewards.async_scorer import AsyncRewardScorer

        self.scorer = AsyncRewardScorer(model, max_pending=8, batch_size=1, timeout_s=timeout)
        self.lock = threading.Lock()
        self.frames: list[np.ndarray] = []
        self.episode_start: float | None = None
        self.task = ""
        self.first_frame_stamp: float | None = None
        self.scored = self.dropped = self.partial = 0
        # deep: every image of an episode is kept, even while the executor is busy elsewhere
        image_topic = f"/robot_rl/camera/{camera}/image_raw"
        self.create_subscription(Image, image_topic, self._on_image, sensor_qos(depth=200))
        self.create_subscription(String, "/robot_rl/task", self._on_task, latched_qos())
        self.create_subscription(Header, EPISODE_EVENT_TOPIC, self._on_event, latched_qos(10))
        self.reward_pub = self.create_publisher(Float32, reward_topic, command_qos(10))
        self.success_pub = self.create_publisher(Bool, success_topic, command_qos(10))
        self.result_pub = self.create_publisher(String, "/robot_rl/reward/result", command_qos(10))
        self.create_timer(0.05, self._publish_results)
        self.get_logger().info(
            f"reward: {name} model on /robot_rl/camera/{camera}, results on {reward_topic}"
        )

    @staticmethod
    def _load(name: str, path: str) -> Any:
        if not path:
            raise ConfigError("parameter 'path' is required (-p path:=<model directory>)")
        from robot_rl.rewards import REWARDS

        cfg_cls = REWARDS.config_cls(name)
        field = "model_path" if name == "vlm" else "path"
        try:
            model = REWARDS.build(name, cfg_cls(**{field: path}))
        except (OSError, ValueError, ImportError) as err:  # ConfigError is a ValueError
            raise ConfigError(f"cannot load the {name} reward model: {str(err).splitlines()[0]}") from err
        if name == "classifier" and not model.model.camera:
            raise ConfigError(
                f"{path} is a state classifier; the reward node needs one trained on images (--camera)"
            )
        return model

    def _on_task(self, msg: String) -> None:
        self.task = msg.data

    def _on_image(self, msg: Image) -> None:
        try:
            image = msg_to_image(msg)
        except ValueError as err:
            self.get_logger().warning(f"dropping an image: {err}", throttle_duration_sec=5.0)
            return
        stamp = stamp_to_s(msg.header.stamp)
        with self.lock:
            in_episode = self.episode_start is not None and stamp >= self.episode_start
            if in_episode and len(self.frames) < self.max_frames:
                if not self.frames:
                    self.first_frame_stamp = stamp
                self.frames.append(image)

    def _on_event(self, msg: Header) -> None:
        from robot_rl.rewards.interface import RewardRequest

        with self.lock:
            if msg.frame_id == "start":
                self.frames, self.episode_start = [], stamp_to_s(msg.stamp)
                return
            frames, start, first = self.frames, self.episode_start, self.first_frame_stamp
            self.frames, self.episode_start, self.first_frame_stamp = [], None, None
        if not frames or start is None:
            return
        if not starts_whole(start, first, self.fps):
            self.partial += 1
            late = (first if first is not None else start) - start
            self.get_logger().info(
                f"episode {start:.3f} not scored: its first frame came {late:.2f} s after its "
                "start (the node joined mid-episode or the camera missed the start)"
            )
            return
        request = RewardRequest(np.stack(frames), self.task, fps=self.fps, episode_id=f"{start:.6f}")
        if not self.scorer.submit(request):  # the queue is full: say so, never wait
            self.dropped += 1
            self.get_logger().warning(f"reward queue full: episode {start:.3f} not scored")

    def _publish_results(self) -> None:
        for res in self.scorer.poll():
            self.scored += 1
            summary = {
                "episode_start": float(res.episode_id or 0.0),
                "score": res.score_raw,
                "progress": res.progress,
                "success": res.success,
                "success_prob": res.success_prob,
                "parse_ok": res.parse_ok,
                "error": res.error,
                "model_id": res.model_id,
                "model_revision": res.model_revision,
                "frames_used": len(res.frames_used),
                "latency_ms": res.latency_ms,
            }
            self.result_pub.publish(String(data=json.dumps(summary)))
            if res.usable:
                self.reward_pub.publish(Float32(data=1.0 if res.success else 0.0))
                self.success_pub.publish(Bool(data=bool(res.success)))

    def close(self) -> None:
        self.scorer.close()


def main() -> None:
    run_node("reward", RewardNode)


if __name__ == "__main__":
    main()
