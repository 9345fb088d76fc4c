"""Stopping a graph started by robot-rl-launch (launch/record_sim.launch.yaml) over real DDS:

- a Ctrl-C that reaches the whole process group (as a terminal's does) is not sent a second time,
  and the recorder saves the episode in progress, complete;
- a SIGTERM to robot-rl-launch alone still stops every node, the same way;
- SIGKILL of robot-rl-launch: every node gets its parent-death SIGINT, stops within seconds (nothing
  more on /robot_rl/executed_action) and runs its normal teardown (the recorder saves).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.ros.test_sim_in_the_loop import _children

pytestmark = [pytest.mark.ros, pytest.mark.sim]
rclpy = pytest.importorskip("rclpy", reason="rclpy not installed (pip install 'robot-rl[ros]')")
pytest.importorskip("mujoco", reason="mujoco not installed (pip install 'robot-rl[sim]')")

ROOT = Path(__file__).resolve().parents[2]
HZ = 50.0


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from tests.ros.bundles import make_bundle

    return make_bundle(tmp_path_factory.mktemp("shutdown") / "bundle", control_hz=HZ)


@pytest.mark.parametrize(
    ("sig", "group"),
    [(signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["ctrl-c-to-the-group", "sigterm-to-the-launcher-alone"],
)
def test_stopping_the_launch_keeps_the_episode_in_progress(bundle, tmp_path, sig, group):
    from robot_rl.benchmarks.ros_shutdown import interrupt_trial

    # real time at 50 Hz: in lockstep the graph can outrun the recorder on 2 loaded cores (1 run in
    # ~30 of robot-rl-bench ros_shutdown), and the episode the recorder saves is then an older one
    r = interrupt_trial(tmp_path, bundle, hz=HZ, sig=sig, group=group, lockstep=False)
    log = r.pop("log_tail")
    print(r)
    assert r["kept"], f"{r}\n{log}"
    # every node stopped on the first signal: no escalation to SIGTERM after 5 s
    assert r["returncode"] == 0 and r["exit_s"] < 5.0, f"{r}\n{log}"
    assert "sending SIGTERM" not in log and "sending SIGKILL" not in log, log
    if group:  # the nodes got the group's SIGINT: robot-rl-launch sends none of its own
        assert "SIGINT reached every process of the group" in log, log
    else:  # they did not: robot-rl-launch sends them SIGINT
        assert "SIGTERM: stopping all" in log, log
    assert "Traceback" not in log, log  # no KeyboardInterrupt in any node's teardown


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_sigkill_of_the_launcher_stops_every_node(bundle, tmp_path, ros_domain):
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float32MultiArray, Header

    from robot_rl.benchmarks.ros_shutdown import start_launch, store_problems
    from robot_rl.real.node_utils import EPISODE_EVENT_TOPIC, command_qos, latched_qos, stamp_to_s

    domain = ros_domain
    store = tmp_path / "store"
    # real time: the mux publishes an executed action (or a hold) every control period
    # auto_reset: an episode is always in progress, even when this probe lags the graph
    args = [f"bundle:={bundle}", f"store:={store}", f"control_hz:={HZ}", "auto_reset:=true"]
    proc = start_launch(ROOT / "launch/record_sim.launch.yaml", args, tmp_path / "launch.log", domain)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("robot_rl_kill_probe", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    executed: list[float] = []
    episode = {"start": None, "n": 0}

    def on_event(msg: Header) -> None:
        if msg.frame_id == "start":
            episode.update(start=stamp_to_s(msg.stamp), n=0)

    def on_obs(msg: JointState) -> None:
        if episode["start"] is not None and stamp_to_s(msg.header.stamp) >= episode["start"]:
            episode["n"] += 1

    node.create_subscription(
        Float32MultiArray, "/robot_rl/executed_action", lambda m: executed.append(time.monotonic()), 10
    )
    node.create_subscription(Header, EPISODE_EVENT_TOPIC, on_event, latched_qos(10))
    node.create_subscription(JointState, "/robot_rl/observation/state", on_obs, command_qos(100))

    def spin_until(pred, timeout):
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end and not pred():
            executor.spin_once(timeout_sec=0.01)
        return pred()

    pids: dict[int, str] = {}
    try:
        assert spin_until(
            lambda: (len(executed) >= 20 and episode["n"] >= 10) or proc.poll() is not None, 120
        )
        assert proc.poll() is None, (tmp_path / "launch.log").read_text()[-3000:]
        in_progress = episode["start"]
        pids = _children(proc.pid)
        names = " ".join(pids.values())
        for exe in ("sim-bridge", "command-mux", "policy-node", "recorder"):
            assert f"robot-rl-{exe}" in names, pids
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        t_kill = time.monotonic()
        assert spin_until(lambda: not any(_alive(p) for p in pids), 10.0), {
            p: c for p, c in pids.items() if _alive(p)
        }
        t_dead = time.monotonic()
        print(f"every node stopped {t_dead - t_kill:.2f} s after the SIGKILL of robot-rl-launch")
        assert t_dead - t_kill < 5.0
        n_before = len(executed)
        spin_until(lambda: False, 1.0)
        assert len(executed) == n_before, "executed actions published after every node had stopped"
        assert executed and executed[-1] <= t_dead + 0.05
    finally:
        executor.remove_node(node)
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    log = (tmp_path / "launch.log").read_text()
    # the nodes ran their normal teardown: the recorder saved the episode in progress, complete
    episodes, problems = store_problems(store)
    assert not problems, problems
    saved = [ep for ep in episodes if abs(ep.metadata["obs_stamps"][0] - in_progress) < 1e-6]
    assert saved, ([e.metadata for e in episodes], log[-3000:])
    # the probe can lag the graph on a loaded machine: the episode it saw may have ended (truncated) just
    # before the kill; then the next one was in progress, and the teardown saved that one
    later = [ep for ep in episodes if ep.metadata["obs_stamps"][0] >= in_progress - 1e-6]
    assert any(ep.metadata["end_reason"] == "shutdown" for ep in later), (
        [e.metadata["end_reason"] for e in episodes],
        log[-3000:],
    )
    assert "Traceback" not in log, log[-3000:]
