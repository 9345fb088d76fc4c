"""Actor/learner split over the loopback link: the learner is SIGKILLed while the actor keeps acting
(with the simulated human), restarted from its checkpoint, and ends up with every actor step exactly
once; the episodes it had not checkpointed are resent, and the counts say so."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import reserve_tcp_port

pytestmark = pytest.mark.smoke

STEPS = 1800  # at 60 Hz the actor runs ~30 s: the learner (slower on a loaded machine) stays behind it


def _train(run_dir: Path, role: str, port: int, *extra: str) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "robot-rl-train"
    args = [
        "task=point_reach",
        "algo=rlpd",
        "teleop=simulated",
        "logger=local",
        "logger.progress=false",
        "demos.n_episodes=8",
        "base.steps=0",
        "algo.num_critics=2",
        "algo.batch_size=32",
        "algo.utd=1",
        "algo.warmup_env_steps=50",
        f"train.env_steps={STEPS}",
        "train.eval_every=100000",
        "train.eval_episodes=2",
        "eval.n_episodes=2",
        "eval.video_episodes=0",
        "train.checkpoint_every=200",
        "train.weights_every=20",
        "train.actor_hz=60",
        f"train.address=127.0.0.1:{port}",
        f"train.role={role}",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]
    log = open(run_dir.parent / f"{run_dir.name}.log", "a")  # noqa: SIM115 (the process owns it)
    return subprocess.Popen([str(exe), *args], stdout=log, stderr=subprocess.STDOUT)


def _learner_seq(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return -1
    seqs = [json.loads(line).get("link/episode_seq", -1) for line in path.read_text().splitlines()]
    return int(max(seqs, default=-1))


def _wait(pred, timeout: float, what: str) -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_learner_kill_and_restart_loses_no_transition(tmp_path):
    port = reserve_tcp_port()
    learner_dir, actor_dir = tmp_path / "learner", tmp_path / "actor"
    learner = _train(learner_dir, "learner", port)
    actor = _train(actor_dir, "actor", port)
    try:
        # the learner has taken and checkpointed a few episodes, and holds some it has not checkpointed
        checkpoints = learner_dir / "checkpoints"
        _wait(
            lambda: _learner_seq(learner_dir) >= 8 and any(checkpoints.glob("step_*")),
            180,
            "the learner to take 8 episodes and checkpoint",
        )
        learner.send_signal(signal.SIGKILL)
        learner.wait()
        status = actor_dir / "actor_status.json"
        killed_at = json.loads(status.read_text())["env_steps"]
        # 180 s: 60 timed out once with make test beside a one-thread benchmark on 2 cores
        _wait(
            lambda: json.loads(status.read_text())["env_steps"] >= killed_at + 300, 180, "the actor to go on"
        )
        assert actor.poll() is None, "the actor stopped with the learner"
        learner = _train(learner_dir, "learner", port, "resume=true")
        assert actor.wait(timeout=300) == 0
        assert learner.wait(timeout=300) == 0
    finally:
        for proc in (learner, actor):
            if proc.poll() is None:
                proc.kill()
    final = json.loads(status.read_text())
    print(f"actor: {final}")
    assert final["done"] and final["env_steps"] == STEPS and final["unacknowledged"] == 0
    # two connections; the resends are the killed learner's unsaved episodes (none when the kill
    # came right after a checkpoint), and every send is a first send or a counted resend
    assert final["connections"] == 2 and final["sent"] == final["episodes_sent"] + final["resent"]
    rows = [json.loads(line) for line in (learner_dir / "metrics.jsonl").read_text().splitlines()]
    seqs = [int(r["link/episode_seq"]) for r in rows if "link/episode_seq" in r]
    # every episode reached a learner (the killed one may have taken a few it never checkpointed:
    # those appear twice in its log); exactly once in the final state is checked below
    assert sorted(set(seqs)) == list(range(final["episodes_sent"]))
    from robot_rl.core.checkpoint import CheckpointManager

    state = CheckpointManager(learner_dir / "checkpoints").load()
    assert state["env_step"] == STEPS  # every actor step, exactly once
    assert state["received_seq"] == final["episodes_sent"] - 1
    online = state["online_buffer"]["fields"]
    assert len(online["reward"]) == STEPS and online["is_intervention"].any()
