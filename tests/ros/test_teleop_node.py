"""The teleop node on the graph: a keyboard (fake key source) takes over through the command mux, the
sim executes the teleop action, the recorder stores those steps with ``is_intervention``, and the
``s`` key (success) ends the recorded episode through the recorder's service."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.sim]
rclpy = pytest.importorskip("rclpy", reason="rclpy not installed (pip install 'robot-rl[ros]')")
pytest.importorskip("mujoco", reason="mujoco not installed (pip install 'robot-rl[sim]')")

ROOT = Path(__file__).resolve().parents[2]
HZ = 20.0


class FakeKeys:
    def __init__(self):
        self.down: set[str] = set()
        self.pressed: list[str] = []

    def held(self):
        return set(self.down)

    def presses(self):
        out, self.pressed = self.pressed, []
        return out


def test_keyboard_teleop_takes_over_and_ends_the_recorded_episode(tmp_path):
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String
    from std_srvs.srv import Trigger

    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.real.graph import launched_graph
    from robot_rl.real.teleop_node import TeleopNode
    from robot_rl.teleop.keyboard import Keyboard, KeyboardConfig
    from tests.ros.bundles import make_bundle

    bundle = make_bundle(tmp_path / "bundle", control_hz=HZ)
    store_path = tmp_path / "store"
    args = [f"bundle:={bundle}", f"store:={store_path}", f"control_hz:={HZ}", "max_delta:=[2.0]"]
    with launched_graph(ROOT / "launch/record_sim.launch.yaml", args, tmp_path, "probe") as (proc, probe):
        keys = FakeKeys()
        # a slow push (1 cm per step), so the mux's workspace box never clips the teleop action
        teleop = TeleopNode(device_override=Keyboard(KeyboardConfig(speed=0.25), source=keys))
        sources: list[str] = []
        probe.create_subscription(String, "/robot_rl/command_source", lambda m: sources.append(m.data), 100)
        executor = SingleThreadedExecutor()
        executor.add_node(probe)
        executor.add_node(teleop)

        def spin_until(pred, timeout):
            t_end = time.monotonic() + timeout
            while time.monotonic() < t_end and proc.poll() is None:
                executor.spin_once(timeout_sec=0.01)
                if pred():
                    return True
            return pred()

        try:
            assert spin_until(lambda: sources.count("policy") >= 10, 60), "the policy never drove"
            assert spin_until(lambda: teleop.end_client.service_is_ready(), 20), "no recorder service"
            # a fresh episode, so the push starts from the home pose (the untrained policy may have
            # driven the arm to the workspace box's edge, where the mux would clip the push)
            reset = probe.create_client(Trigger, "/robot_rl/reset")
            assert reset.wait_for_service(timeout_sec=10)
            future = reset.call_async(Trigger.Request())
            assert spin_until(future.done, 5) and future.result().success
            n_policy = sources.count("policy")
            assert spin_until(lambda: sources.count("policy") >= n_policy + 2, 5)
            keys.down = {"left"}  # push left (+y): a takeover for as long as the key is down
            assert spin_until(lambda: sources.count("teleop") >= 10, 10), set(sources)
            keys.down = set()
            assert spin_until(lambda: sources[-1] == "policy", 5)
            n_saved = len(EpisodeStore(store_path)) if (store_path / "meta.json").exists() else 0
            keys.pressed = ["s"]  # success: the recorder saves the episode in progress
            assert spin_until(lambda: "success" in teleop.events_sent, 2)
            spin_until(lambda: False, 1.0)
        finally:
            executor.shutdown()
            teleop.destroy_node()
    store = EpisodeStore(store_path)
    assert len(store) >= n_saved + 1  # (+ the next episode, saved when the graph shuts down)
    ep = store[n_saved]
    teleop_steps = np.flatnonzero(ep.is_intervention)
    print(f"recorded episode: {ep.length} steps, {teleop_steps.size} teleop, end {ep.metadata['end_reason']}")
    assert ep.metadata["end_reason"] == "end_episode"
    assert teleop_steps.size >= 8
    pushed_left = [0.0, 0.25, 0.0, -1.0]  # "left" at speed 0.25, gripper open
    np.testing.assert_allclose(ep.actions[teleop_steps], [pushed_left] * teleop_steps.size, atol=1e-6)
