"""The reward node scores finished episodes from the camera topic in the background: frames of each
episode (cut by the sim bridge's episode events) go to the model with the task text, results come
back on the reward/success topics, and a slow model never makes the node lose the next episode's
frames."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.sim]
rclpy = pytest.importorskip("rclpy", reason="rclpy not installed (pip install 'robot-rl[ros]')")
pytest.importorskip("mujoco", reason="mujoco not installed (pip install 'robot-rl[sim]')")

ROOT = Path(__file__).resolve().parents[2]


class SlowJudge:
    """Takes 0.5 s per episode; 'success' when the clip has >= 50 frames. Records what it saw."""

    model_id = "slow-judge"

    def __init__(self):
        self.seen: list[tuple[int, str]] = []
        self.lock = threading.Lock()

    def score_batch(self, reqs):
        from robot_rl.rewards.interface import RewardResult
        from robot_rl.rewards.vlm import result_from_text

        out = []
        for req in reqs:
            time.sleep(0.5)
            with self.lock:
                self.seen.append((len(req.frames), req.task))
            text = f"ANSWER: {5 if len(req.frames) >= 50 else 1}"
            score, progress, success = result_from_text(text)
            out.append(
                RewardResult(score, progress, success, float(success), True, text, self.model_id, "r0", "h",
                             episode_id=req.episode_id)
            )  # fmt: skip
        return out

    def score(self, req):
        return self.score_batch([req])[0]


def test_reward_node_scores_episodes_in_the_background(tmp_path):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from std_msgs.msg import Bool, Float32, String

    from robot_rl.real.graph import launched_graph
    from robot_rl.real.reward_node import RewardNode
    from tests.ros.bundles import make_bundle

    bundle = make_bundle(tmp_path / "bundle")
    args = [
        f"bundle:={bundle}",
        "lockstep:=true",
        "auto_reset:=true",
        "cameras:=[front]",
        "image_size:=32",
        "camera_hz:=20.0",  # an image with every observation: 101 per 100-step episode
        "watchdog_periods:=200",
        "max_obs_age_s:=10.0",
    ]
    judge = SlowJudge()
    with launched_graph(ROOT / "launch/sim_in_the_loop.launch.yaml", args, tmp_path, "probe") as (
        proc,
        probe,
    ):
        node = RewardNode(
            model_override=judge,
            parameter_overrides=[
                Parameter("reward_topic", value="/robot_rl/model_reward"),
                Parameter("success_topic", value="/robot_rl/model_success"),
                Parameter("fps", value=20.0),
            ],
        )
        rewards, successes, results = [], [], []
        probe.create_subscription(Float32, "/robot_rl/model_reward", lambda m: rewards.append(m.data), 10)
        probe.create_subscription(Bool, "/robot_rl/model_success", lambda m: successes.append(m.data), 10)
        probe.create_subscription(
            String, "/robot_rl/reward/result", lambda m: results.append(json.loads(m.data)), 10
        )
        executor = SingleThreadedExecutor()
        executor.add_node(probe)
        executor.add_node(node)
        try:
            t_end = time.monotonic() + 120
            while time.monotonic() < t_end and proc.poll() is None and len(results) < 3:
                executor.spin_once(timeout_sec=0.01)
        finally:
            executor.shutdown()
            node.close()
            node.destroy_node()
    print(f"scored: {judge.seen}; results: {results}")
    assert len(results) >= 3, results
    # every scored episode came whole: one the node joined mid-way is skipped, not scored as a failure
    assert all(n == 101 for n, _ in judge.seen), judge.seen
    assert all(task for _, task in judge.seen)
    assert len({task for _, task in judge.seen}) > 1  # each episode's own instruction (seeded colours)
    assert rewards[: len(results)] == [1.0] * len(results) and all(successes)
    assert all(r["parse_ok"] and r["model_id"] == "slow-judge" and r["latency_ms"] >= 0 for r in results)


def test_reward_node_skips_an_episode_it_joined_mid_way(ros_domain):
    """Driven by hand (no graph): a clip whose first frame is 0.5 s after its start is not scored; a
    clip that starts at its start is, and its frames and instruction reach the model."""

    import numpy as np
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header, String

    from robot_rl.real.conversions import image_to_msg
    from robot_rl.real.node_utils import stamp_from_s
    from robot_rl.real.reward_node import RewardNode

    def event(kind, t):
        msg = Header(frame_id=kind)
        msg.stamp = stamp_from_s(t)
        return msg

    def image(t):
        msg = image_to_msg(np.zeros((8, 8, 3), np.uint8), Image())
        msg.header.stamp = stamp_from_s(t)
        return msg

    judge = SlowJudge()
    rclpy.init(domain_id=ros_domain)
    try:
        node = RewardNode(model_override=judge, parameter_overrides=[Parameter("fps", value=10.0)])
        try:
            node._on_task(String(data="lift the red cube"))
            node._on_event(event("start", 100.0))
            for k in range(60):  # joined 0.5 s (5 frame periods) after the start
                node._on_image(image(100.5 + k / 10))
            node._on_event(event("truncated", 106.5))
            node._on_event(event("start", 200.0))
            for k in range(60):
                node._on_image(image(200.0 + k / 10))
            node._on_event(event("truncated", 206.0))
            t_end = time.monotonic() + 10
            while time.monotonic() < t_end and node.scored < 1:
                node._publish_results()
                time.sleep(0.05)
        finally:
            node.close()
            node.destroy_node()
    finally:
        rclpy.shutdown()
    assert node.partial == 1 and node.scored == 1
    assert judge.seen == [(60, "lift the red cube")]


def test_reward_node_loads_image_classifiers_and_refuses_state_ones(tmp_path):
    import numpy as np

    from robot_rl.real.node_utils import ConfigError
    from robot_rl.real.reward_node import RewardNode
    from robot_rl.rewards.classifier import ClassifierReward, save_classifier, train_classifier
    from tests.unit.test_reward_classifier import IMAGE_CFG, episode, image_episode

    rng = np.random.default_rng(0)
    image_model, report = train_classifier([image_episode(rng, i % 2 == 0) for i in range(8)], IMAGE_CFG)
    loaded = RewardNode._load("classifier", str(save_classifier(tmp_path / "front", image_model, report)))
    assert isinstance(loaded, ClassifierReward) and loaded.model.camera == "front"
    state_model, report = train_classifier([episode(rng, i % 2 == 0) for i in range(8)])
    with pytest.raises(ConfigError, match="is a state classifier"):
        RewardNode._load("classifier", str(save_classifier(tmp_path / "state", state_model, report)))
