"""The sim-in-the-loop graph over real DDS on loopback: robot-rl-launch starts sim_bridge + command_mux +
policy as separate processes; a probe node checks that commands reach the sim, that the e-stop latches
and releases, and that killing the policy (SIGKILL) makes the mux hold."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.sim]
rclpy = pytest.importorskip("rclpy", reason="rclpy not installed (pip install 'robot-rl[ros]')")
pytest.importorskip("mujoco", reason="mujoco not installed (pip install 'robot-rl[sim]')")

ROOT = Path(__file__).resolve().parents[2]
HZ = 20.0  # the launch default: the watchdog (1.5 periods) holds 75 ms after the last action


def _children(pid: int) -> dict[int, str]:
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out[int(stat.parent.name)] = (
                    (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                )
        except (OSError, IndexError, ValueError):
            continue
    return out


@pytest.fixture
def graph(tmp_path):
    from robot_rl.real.graph import launched_graph
    from tests.ros.bundles import make_bundle

    bundle = make_bundle(tmp_path / "bundle", control_hz=HZ)
    # the policy on its own timer (as on a real robot), so the graph tests cover both policy modes
    args = [f"bundle:={bundle}", f"control_hz:={HZ}", "act_on_state:=false"]  # launch defaults otherwise
    launch = ROOT / "launch/sim_in_the_loop.launch.yaml"
    with launched_graph(launch, args, tmp_path, "robot_rl_test_probe") as graph:
        yield graph


def test_commands_reach_the_sim_estop_latches_and_kill_holds(graph):
    from geometry_msgs.msg import PointStamped
    from std_msgs.msg import Float32MultiArray, Float64MultiArray, String
    from std_srvs.srv import SetBool, Trigger

    proc, node = graph
    seen: list[tuple[float, str, list[float]]] = []
    latest = {"exec": None}
    tcp: list[np.ndarray] = []
    node.create_subscription(
        Float32MultiArray, "/robot_rl/executed_action", lambda m: latest.update(exec=list(m.data)), 10
    )
    node.create_subscription(
        String,
        "/robot_rl/command_source",
        lambda m: seen.append((time.monotonic(), m.data, latest["exec"])),
        10,
    )
    commands: list[list[float]] = []
    node.create_subscription(
        Float64MultiArray,
        "/forward_position_controller/commands",
        lambda m: commands.append(list(m.data)),
        10,
    )
    node.create_subscription(
        PointStamped,
        "/robot_rl/tcp_position",
        lambda m: tcp.append(np.array([m.point.x, m.point.y, m.point.z])),
        10,
    )

    def spin_until(pred, timeout):
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end and proc.poll() is None:
            rclpy.spin_once(node, timeout_sec=0.01)
            if pred():
                return True
        return pred()

    # 1. the policy drives the sim through the mux
    assert spin_until(lambda: sum(s == "policy" for _, s, _ in seen) >= 20, 60), (
        "no policy commands reached the mux"
    )
    # a fresh episode (Lift's horizon is 100 steps; the first one may have ended while the policy loaded)
    reset = node.create_client(Trigger, "/robot_rl/reset")
    assert reset.wait_for_service(timeout_sec=10)
    future = reset.call_async(Trigger.Request())
    assert spin_until(future.done, 5) and future.result().success
    n_tcp = len(tcp)
    assert spin_until(lambda: len(tcp) > n_tcp + 10, 5)
    assert len(commands) > 20 and np.linalg.norm(tcp[-1] - tcp[n_tcp]) > 1e-4, "the sim did not move"

    # 2. e-stop latches: every command while latched is a hold with zero tcp deltas
    client = node.create_client(SetBool, "/robot_rl/estop")
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(SetBool.Request(data=True))
    assert spin_until(future.done, 5) and future.result().success
    t_latched = time.monotonic()
    spin_until(lambda: False, 1.0)
    latched = [(s, a) for t, s, a in seen if t > t_latched + 0.05]
    assert latched and all(s == "hold:estop" for s, _ in latched), {s for s, _ in latched}
    assert all(np.allclose(a[:3], 0.0) for _, a in latched if a is not None)
    future = client.call_async(SetBool.Request(data=False))
    assert spin_until(future.done, 5)
    t_released = time.monotonic()
    assert spin_until(lambda: any(s == "policy" and t > t_released for t, s, _ in seen), 5)

    # 3. SIGKILL of the policy process: the mux holds within 100 ms
    policy_pids = [pid for pid, cmd in _children(proc.pid).items() if "robot-rl-policy-node" in cmd]
    assert len(policy_pids) == 1, _children(proc.pid)
    spin_until(lambda: False, 0.3)
    t_kill = time.monotonic()
    os.kill(policy_pids[0], signal.SIGKILL)
    assert spin_until(lambda: any(s == "hold:watchdog" and t > t_kill for t, s, _ in seen), 5)
    t_hold = min(t for t, s, _ in seen if s == "hold:watchdog" and t > t_kill)
    print(f"policy SIGKILL -> first hold command at the probe: {1e3 * (t_hold - t_kill):.1f} ms at {HZ:g} Hz")
    # 1.5 periods (75 ms) after the policy's last action, checked every 10 ms: the hold comes 25-85 ms
    # after the kill plus delivery (robot-rl-bench ros_safety measures it over repeated kills)
    assert t_hold - t_kill < 0.1, "the issue's bound: hold commands within 100 ms of the kill"
    # commands repeated after the crash say so: no "policy" label once the in-flight action is through
    late = [s for t, s, _ in seen if t_kill + 0.03 < t < t_hold]
    assert all(s == "repeat:policy" for s in late), late
    assert proc.poll() is None  # the policy is not required: the robot side keeps holding


@pytest.mark.parametrize(
    "script, params, message",
    [
        ("robot-rl-policy-node", ["bundle:=/nonexistent/bundle"], "cannot load bundle: bundle folder"),
        ("robot-rl-command-mux", ["command_type:=pose"], "parameter 'command_type' is 'pose'; allowed"),
        ("robot-rl-command-mux", ["max_delta:=[0.1, 0.2]"], "'max_delta' has 2 values; expected 1 or"),
        ("robot-rl-sim-bridge", ["task:=robot_rl/Nope-v0"], "cannot make task 'robot_rl/Nope-v0'"),
        ("robot-rl-recorder", ["store:=/tmp/x", "source:=bag"], "parameter 'source' is 'bag'; allowed"),
        ("robot-rl-recorder", [], "parameter 'store' is required"),
        ("robot-rl-teleop-node", ["device:=wand"], "parameter 'device' is 'wand'; allowed"),
        ("robot-rl-reward-node", [], "parameter 'path' is required"),
        (
            "robot-rl-reward-node",
            ["path:=/nonexistent"],
            "cannot load the standin reward model: reward.path=",
        ),
        (
            "robot-rl-teleop-node",
            ["device:=spacemouse"],
            "cannot open the spacemouse: install robot-rl[teleop]",
        ),
    ],
)
def test_bad_parameters_fail_at_startup_with_one_line(script, params, message, ros_domain):
    exe = Path(sys.executable).parent / script
    args = [str(exe), "--ros-args"] + [x for p in params for x in ("-p", p)]
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros_domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], out.stderr[-2000:]


def test_policy_joint_names_missing_from_joint_states_fail_at_startup(tmp_path, ros_domain):
    """A robot whose /joint_states lack a joint of ``joint_names``: the policy node stops while it
    configures (exit 2, one line), not at its first control step."""
    import threading

    from sensor_msgs.msg import JointState

    from robot_rl.deploy.bundle import load_policy
    from tests.ros.bundles import make_bundle

    bundle = make_bundle(tmp_path / "bundle")
    state_dim = int(load_policy(bundle).bundle_meta["obs_spec"]["state_dim"])
    wanted = [f"joint_{i}" for i in range(state_dim)]
    have = [*wanted[:-1], "gripper_left"]  # the last wanted joint is missing
    domain = ros_domain
    rclpy.init(domain_id=domain)
    node = rclpy.create_node("robot_rl_test_joint_states")
    pub = node.create_publisher(JointState, "/joint_states", 10)
    stop = threading.Event()

    def publish() -> None:
        while not stop.is_set():
            pub.publish(JointState(name=have, position=[0.0] * len(have)))
            time.sleep(0.05)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        exe = Path(sys.executable).parent / "robot-rl-policy-node"
        params = [f"bundle:={bundle}", "state_topic:=/joint_states", f"joint_names:=[{', '.join(wanted)}]"]
        args = [str(exe), "--ros-args"] + [x for p in params for x in ("-p", p)]
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
        out = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    finally:
        stop.set()
        thread.join()
        node.destroy_node()
        rclpy.shutdown()
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"joints ['{wanted[-1]}'] are not in /joint_states" in errors[0], errors
