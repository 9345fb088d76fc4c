"""Shared fixtures: tiny run configs on the MuJoCo-free PointReach task."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("MUJOCO_GL", "egl")

# Property tests draw the same examples on every run unless HYPOTHESIS_PROFILE=explore: a CI failure
# reproduces, and a new counterexample search is a deliberate local run.
from hypothesis import settings

settings.register_profile("derandomized", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "derandomized"))


def make_train_config(run_dir, **overrides):
    """A small TrainConfig on PointReach built through hydra's compose API (as the CLI does)."""
    from robot_rl.cli.common import compose

    args = {
        "task": "point_reach",
        "logger": "local",
        "logger.progress": "false",
        "demos.n_episodes": "8",
        "base.steps": "60",
        "train.log_every": "10",
        "train.checkpoint_every": "30",
        "eval.n_episodes": "4",
        "eval.video_episodes": "0",
        "base.batch_size": "32",
        "algo": "bc",
        "device": "cpu",
        "run_dir": str(run_dir),
    }
    args.update({k: str(v) for k, v in overrides.items()})
    return compose("train", args)


@pytest.fixture
def train_config(tmp_path):
    return lambda **overrides: make_train_config(tmp_path / "run", **overrides)


def pytest_configure(config):
    # small networks on a shared 2-core machine: one intra-op thread avoids oversubscription
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def ros_domain():
    """A ROS domain id (1-101) that no other process of this host uses while the test runs."""
    from robot_rl.real.graph import reserved_domain

    with reserved_domain() as domain:
        yield domain


def reserve_tcp_port() -> int:
    """A free TCP port in 20000-32767 (below Linux's ephemeral range, so the kernel never hands it to
    an outgoing connection), drawn from the OS's entropy, not the ``random`` module that Trainer runs
    re-seed; checked free by binding it."""
    import random
    import socket

    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, 32768)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port in 20000-32767")
