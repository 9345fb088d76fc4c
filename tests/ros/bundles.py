"""Helpers for the ROS graph integration tests: a small untrained bc_chunk bundle for a sim task; the
launch harness (``launched_graph``) lives in :mod:`robot_rl.real.graph`."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_bundle(path: Path, task: str = "robot_rl/Lift-v0", control_hz: float = 20.0) -> Path:
    import gymnasium as gym

    import robot_rl  # noqa: F401  (registers the ids)
    from robot_rl.core.types import ActionSpec, ObsSpec
    from robot_rl.deploy.bundle import save_bundle
    from robot_rl.policies.bc_chunk import BCChunkConfig, BCChunkPolicy

    env = gym.make(task)
    state_dim = int(env.observation_space["state"].shape[0])
    action_dim = int(env.action_space.shape[0])
    env.close()
    policy = BCChunkPolicy(
        BCChunkConfig(chunk_size=4, execution_horizon=2, hidden_dims=[32]),
        ObsSpec(state_dim),
        ActionSpec.normalized(action_dim),
    )
    policy.fit_normalizer(np.random.default_rng(0).normal(size=(64, state_dim)))
    return save_bundle(path, policy, control_hz=control_hz, task=task)
