"""Shared fixtures: tiny run configs on the MuJoCo-free PointReach task."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("MUJOCO_GL", "egl")


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
