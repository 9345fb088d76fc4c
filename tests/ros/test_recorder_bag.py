"""The recorder writes a rosbag2 MCAP bag beside its episode store (``format:=both``) from the
sim-in-the-loop graph over real DDS (lockstep, auto-reset); the recorder is SIGKILLed mid-episode.

The cut bag must import (robot_rl.data.rosbag, no rclpy) every episode the recorder finished, each
starting at its reset observation (the in-process reset of its seed) and pairing observations and
executed actions as the recorder's store does, report the unfinished episode, and train a base policy
end to end: ``robot-rl-train algo=bc demos.path=<bag>`` (tiny budget) writes a loadable bundle.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.sim]
rclpy = pytest.importorskip("rclpy", reason="rclpy not installed (pip install 'robot-rl[ros]')")
pytest.importorskip("mujoco", reason="mujoco not installed (pip install 'robot-rl[sim]')")
pytest.importorskip("mcap", reason="mcap not installed (pip install 'robot-rl[bag]')")

ROOT = Path(__file__).resolve().parents[2]
TASK = "robot_rl/Lift-v0"
# lockstep runs as fast as the nodes answer; the rate only sets the mux watchdog (1.5 periods = 300 ms
# here), so a slow answer on a loaded machine does not turn into a hold
HZ = 5.0
N_ENDS = 5  # episode ends seen after the recorder is up (its subscriptions may match a bit later)


# slow tier (pytest -m slow): in lockstep the recorder can fall behind the graph and the bag import
# can pair a step with the neighbouring observation; 3 of 5 CI runs on 2026-12-08 failed on an episode
# boundary, not on the bag format. The format, the round trip, cut bags and demos.path=<bag> are in the
# default tier (tests/unit/test_rosbag.py).
@pytest.mark.slow
def test_recorder_bag_survives_sigkill_matches_the_store_and_trains_a_base(tmp_path):

    from std_msgs.msg import Header
    from std_srvs.srv import Trigger

    import robot_rl
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.data.rosbag import bag_to_records, read_bag
    from robot_rl.real.graph import launched_graph
    from tests.ros.bundles import make_bundle

    # launched_graph reserves a domain no other process of this host uses: a second sim bridge on the
    # same domain (another test running at the same time) would mix two rollouts in the bag
    bundle = make_bundle(tmp_path / "bundle", task=TASK, control_hz=HZ)
    store_path, bag_path = tmp_path / "store", tmp_path / "bag"
    args = [f"bundle:={bundle}", f"task:={TASK}", f"control_hz:={HZ}", "lockstep:=true", "auto_reset:=true"]
    launch = ROOT / "launch/sim_in_the_loop.launch.yaml"
    with launched_graph(launch, args, tmp_path, "robot_rl_test_bag") as (proc, node):
        env = dict(
            os.environ,
            ROS_DOMAIN_ID=str(node.context.get_domain_id()),
            ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        )
        recorder = shutil.which("robot-rl-recorder", path=str(Path(sys.executable).parent))
        assert recorder, "robot-rl-recorder is not installed (pip install -e .)"
        params = {
            "store": store_path,
            "format": "both",
            "bag": bag_path,
            "source": "sim_bridge",
            "env_id": TASK,
            "control_hz": HZ,
        }
        cmd = [recorder, "--ros-args"] + [x for k, v in params.items() for x in ("-p", f"{k}:={v}")]
        with open(tmp_path / "recorder.log", "w") as log:
            rec = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            ends: list[str] = []
            node.create_subscription(
                Header,
                "/robot_rl/episode_event",
                lambda m: ends.append(m.frame_id) if m.frame_id != "start" else None,
                50,
            )

            def spin_until(pred, timeout):
                t_end = time.monotonic() + timeout
                while time.monotonic() < t_end and proc.poll() is None and rec.poll() is None:
                    rclpy.spin_once(node, timeout_sec=0.01)
                    if pred():
                        return True
                return pred()

            client = node.create_client(Trigger, "/robot_rl/recorder/end_episode")
            assert client.wait_for_service(timeout_sec=60), "the recorder never came up"
            n = len(ends)
            t0 = time.monotonic()
            assert spin_until(lambda: len(ends) >= n + N_ENDS, 120), (ends, rec.poll())
            spin_until(lambda: False, 0.3)  # into the next episode: the kill cuts one in progress
            print(f"{N_ENDS} episode ends in {time.monotonic() - t0:.1f} s")
            os.kill(rec.pid, signal.SIGKILL)
            rec.wait(timeout=10)
        finally:
            if rec.poll() is None:
                rec.kill()
            print((tmp_path / "recorder.log").read_text()[-2000:])

    store = EpisodeStore(store_path)  # the store beside the bag survives the kill too
    assert len(store) >= N_ENDS - 2, len(store)
    contents = read_bag(bag_path)
    records, report = bag_to_records(contents)
    print(report.line())
    assert not contents.complete and "before the footer" in contents.problem  # killed: no footer
    # the truncation is reported; whether a partial episode is left depends on where the kill fell
    # relative to the recorder's per-episode chunk flush (cuts inside an episode: tests/unit/test_rosbag.py)
    assert "the bag is truncated" in report.line(), report.line()
    complete = [r for r in records if "seed" in r.metadata]  # started by a sim bridge reset
    assert len(complete) >= N_ENDS - 2, report.line()

    # anchors: each episode starts at the sim bridge's reset observation (matched by stamp), so its
    # first state and task are the in-process reset's for that seed
    env = gym.make(TASK, terminate_on_success=True)
    for ep in complete:
        obs, info = env.reset(seed=ep.metadata["seed"])
        np.testing.assert_array_equal(ep.observations["state"][0], obs["state"].astype(np.float32))
        assert info["task"] == ep.task and ep.reward_source == "sim" and ep.source == "sim_bridge"
        assert abs(ep.length - 100) <= 2 and ep.truncated[-1], ep.length  # Lift's horizon: 100 steps
    env.close()
    # steps: (observation, executed action) pairs as the recorder paired them in its store. In lockstep
    # the next observation follows a command by a few hundred microseconds, and it can reach the
    # recorder before the mux's copy of that command on /robot_rl/executed_action (both the bag's
    # receive times and the store's callback order see that); such a step pairs differently
    pairs = {
        (st.tobytes(), a.tobytes())
        for ep in store
        for st, a in zip(ep.observations["state"][:-1], ep.actions)
    }
    steps = [
        (st.tobytes(), a.tobytes())
        for ep in complete
        for st, a in zip(ep.observations["state"][:-1], ep.actions)
    ]
    agree = sum(step in pairs for step in steps) / len(steps)
    print(f"{len(steps)} imported steps, {100 * agree:.1f} % paired as in the store")
    assert agree >= 0.6  # 81-98.5 % in five runs on 2 loaded cores (2026-12); an off-by-one pairing: ~0

    # train a base on the bag: demos.path accepts a bag folder
    run = tmp_path / "run"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "robot_rl.cli.train",
            "task=lift",
            "algo=bc",
            f"demos.path={bag_path}",
            "demos.keep_failures=true",
            "base.steps=30",
            "base.batch_size=32",
            "eval.n_episodes=1",
            "eval.video_episodes=0",
            "logger=local",
            "logger.progress=false",
            "device=cpu",
            f"hydra.run.dir={run}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    policy = robot_rl.load_policy(run / "bundle")
    state = store[0].observations["state"][0]
    assert policy.act({"state": state}).shape == (4,)
