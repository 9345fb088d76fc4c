"""Smoke: the exported refined policy (base + residual bundle) acts exactly like the trained
``residual`` algorithm's deterministic policy, episode for episode."""

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.smoke


def _rollout(policy, env, seed, steps=40):
    obs, _ = env.reset(seed=seed)
    policy.reset()
    actions = []
    for _ in range(steps):
        actions.append(policy.act(obs))
        obs, _, terminated, truncated, _ = env.step(actions[-1])
        if terminated or truncated:
            break
    return np.array(actions)


def test_refined_bundle_reproduces_the_algorithms_actions(tmp_path):
    from robot_rl.deploy.bundle import load_policy
    from robot_rl.trainer import Trainer, _AlgoPolicy, make_env
    from tests.conftest import make_train_config

    cfg = make_train_config(
        tmp_path / "run",
        algo="residual",
        **{
            "train.env_steps": 300,
            "train.eval_every": 100_000,
            "algo.warmup_env_steps": 100,
            "algo.critic_warmup_updates": 10,
            "algo.batch_size": 16,
        },
    )
    trainer = Trainer(cfg)
    summary = trainer.run()
    torch.manual_seed(0)
    for p in trainer.algo.actor.parameters():  # a clearly non-zero residual
        p.data.add_(0.3 * torch.randn_like(p))
    trainer.algo.export_bundle(tmp_path / "refined")
    refined = load_policy(tmp_path / "refined")
    for seed in (0, 1):
        algo_actions = _rollout(_AlgoPolicy(trainer.algo), trainer._make_online_env(), seed)
        bundle_actions = _rollout(refined, make_env(cfg), seed)
        base_actions = _rollout(trainer.policy, make_env(cfg), seed)
        assert algo_actions.shape == bundle_actions.shape
        np.testing.assert_allclose(bundle_actions, algo_actions, atol=1e-6)
        assert not np.allclose(bundle_actions[: len(base_actions)], base_actions[: len(bundle_actions)])
    assert summary.bundle_path is not None
