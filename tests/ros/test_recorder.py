"""The recorder in the sim-in-the-loop graph over real DDS on loopback (launch/record_sim.launch.yaml).

A scripted teleop takes over for a few steps of an episode that runs to the task horizon; the stored
episode must have the horizon's number of steps, ``is_intervention`` exactly on the steps the mux
executed the teleop action, the policy's proposals kept, finite actions. Then end_episode / discard,
and a SIGKILL of the recorder mid-episode leaves a readable store with every saved episode.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from tests.ros.test_sim_in_the_loop import _children

pytestmark = [pytest.mark.ros, pytest.mark.sim]
rclpy = pytest.importorskip("rclpy", reason="rclpy not installed (pip install 'robot-rl[ros]')")
pytest.importorskip("mujoco", reason="mujoco not installed (pip install 'robot-rl[sim]')")

ROOT = Path(__file__).resolve().parents[2]
HZ = 50.0
TASK = "robot_rl/Lift-v0"
TELEOP = np.array([0.25, -0.125, 0.125, -1.0], dtype=np.float32)  # exact in float32
K_TELEOP = 12


@pytest.fixture
def graph(tmp_path):
    from robot_rl.real.graph import launched_graph
    from tests.ros.bundles import make_bundle

    bundle = make_bundle(tmp_path / "bundle", task=TASK, control_hz=HZ)
    store = tmp_path / "store"
    args = [
        f"bundle:={bundle}",
        f"store:={store}",
        f"task:={TASK}",
        f"control_hz:={HZ}",
        "max_delta:=[2.0]",  # no rate limit: the executed teleop action is the teleop action
        # this test's "device" answers each observation from a Python loop beside the graph: on a loaded
        # machine it can miss 30 ms (1.5 periods at 50 Hz), and a watchdog hold would split the burst
        "watchdog_periods:=5",
    ]
    launch = ROOT / "launch/record_sim.launch.yaml"
    with launched_graph(launch, args, tmp_path, "robot_rl_test_teleop") as (proc, node):
        yield proc, node, store


def test_recorder_stores_interventions_end_discard_and_survives_sigkill(graph):
    import gymnasium as gym
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Bool, Float32MultiArray, Header, String
    from std_srvs.srv import Trigger

    from robot_rl.data.episode_store import EpisodeStore

    proc, node, store_path = graph
    sources: list[str] = []
    states: list[float] = []
    events: list[str] = []
    node.create_subscription(String, "/robot_rl/command_source", lambda m: sources.append(m.data), 10)
    node.create_subscription(JointState, "/robot_rl/observation/state", lambda m: states.append(1.0), 10)
    node.create_subscription(Header, "/robot_rl/episode_event", lambda m: events.append(m.frame_id), 10)
    teleop_pub = node.create_publisher(Float32MultiArray, "/robot_rl/teleop/action", 1)
    flag_pub = node.create_publisher(Bool, "/robot_rl/intervention", 1)

    def spin_until(pred, timeout):
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end and proc.poll() is None:
            rclpy.spin_once(node, timeout_sec=0.005)
            if pred():
                return True
        return pred()

    def call(name, timeout=10.0):
        client = node.create_client(Trigger, name)
        assert client.wait_for_service(timeout_sec=timeout), name
        future = client.call_async(Trigger.Request())
        assert spin_until(future.done, timeout), name
        return future.result()

    horizon = int(gym.make(TASK).unwrapped.horizon)
    assert spin_until(lambda: sources.count("policy") >= 20, 90), "the policy never drove the mux"
    assert node.create_client(Trigger, "/robot_rl/recorder/end_episode").wait_for_service(timeout_sec=30)

    # 1. a fresh episode to the horizon, with a teleop burst of K_TELEOP steps in the middle
    t0 = time.monotonic()
    n_events = len(events)
    assert call("/robot_rl/reset").success
    # count events from the reset's start on: the episode before may end (truncated) just as we reset
    assert spin_until(lambda: "start" in events[n_events:], 5), events[n_events:]
    n_events += events[n_events:].index("start") + 1
    n = len(states)
    assert spin_until(lambda: len(states) >= n + 20, 10)
    # a teleop device publishes its takeover flag with every command (with one flag message before
    # the burst, one make-test run on 2026-12-02 stored no intervention step at all)
    for _ in range(K_TELEOP):
        flag_pub.publish(Bool(data=True))
        teleop_pub.publish(Float32MultiArray(data=TELEOP.tolist()))
        n_before = len(states)
        spin_until(lambda n_before=n_before: len(states) > n_before, 1.0)  # one teleop action per step
    flag_pub.publish(Bool(data=False))
    assert spin_until(lambda: {"truncated", "terminated"} & set(events[n_events:]), 30), events
    spin_until(lambda: False, 0.5)  # the recorder saves on the same event
    print(f"reset -> episode of {horizon} steps stored: {time.monotonic() - t0:.2f} s at {HZ:g} Hz")

    store = EpisodeStore(store_path)
    ep = store[len(store) - 1]
    assert ep.metadata["end_reason"] in ("truncated", "terminated")
    assert ep.length == horizon or (ep.terminated[-1] and ep.length < horizon), ep.length
    assert ep.observations["state"].shape[0] == ep.length + 1
    assert ep.source == "sim_bridge" and ep.reward_source == "sim" and ep.task
    assert not ep.is_demo.any() and (ep.truncated[-1] or ep.terminated[-1])
    assert np.all(np.isfinite(ep.actions)) and np.all(np.isfinite(ep.proposed_actions))
    assert np.all(np.isfinite(ep.rewards)) and ep.metadata["missing_rewards"] <= 1
    is_teleop_action = np.all(np.abs(ep.actions - TELEOP) < 1e-6, axis=1)
    diff = np.flatnonzero(ep.is_intervention != is_teleop_action)
    labels = ep.metadata["command_source"]
    assert not diff.size, [(int(i), labels[i], ep.actions[i].tolist()) for i in diff]
    n_int = int(ep.is_intervention.sum())
    idx = np.flatnonzero(ep.is_intervention)
    print(f"intervention steps stored: {n_int} for {K_TELEOP} teleop actions published")
    assert K_TELEOP - 3 <= n_int <= K_TELEOP + 3, n_int
    assert idx[-1] - idx[0] + 1 == n_int, idx  # one contiguous burst
    # the policy kept proposing during the takeover: proposed != executed there
    assert not np.any(np.all(np.abs(ep.proposed_actions[idx] - TELEOP) < 1e-6, axis=1))
    assert all(ep.metadata["command_source"][i] in ("teleop", "repeat:teleop") for i in idx)

    # 2. discard drops the episode in progress; end_episode saves the next one
    n_saved = len(store)
    assert call("/robot_rl/reset").success
    n = len(states)
    assert spin_until(lambda: len(states) >= n + 10, 10)
    discard = call("/robot_rl/recorder/discard")
    assert discard.success and "discarded" in discard.message
    n = len(states)
    assert spin_until(lambda: len(states) >= n + 20, 10)
    end = call("/robot_rl/recorder/end_episode")
    assert end.success and end.message.startswith(f"saved episode {n_saved}:"), end.message
    n_saved += 1

    # 3. SIGKILL of the recorder mid-episode: the store stays readable with every saved episode
    n = len(states)
    assert spin_until(lambda: len(states) >= n + 20, 10)
    pids = [pid for pid, cmd in _children(proc.pid).items() if "robot-rl-recorder" in cmd]
    assert len(pids) == 1, _children(proc.pid)
    os.kill(pids[0], signal.SIGKILL)
    spin_until(lambda: False, 0.5)
    assert proc.poll() is None  # the recorder is not required
    store = EpisodeStore(store_path)
    assert len(store) == n_saved
    for i in range(len(store)):
        assert store[i].length >= 1
    assert store[n_saved - 1].metadata["end_reason"] == "end_episode"
    assert store[n_saved - 1].length >= 15  # the probe counted 20 observations, the recorder ~ the same
    # a restarted recorder appends to it (same fps)
    assert len(EpisodeStore(store_path, create=True, fps=HZ, env_id=TASK)) == n_saved
