"""Every registered algorithm, policy, task, reward model and teleop device obeys its contract."""

from pathlib import Path

import pytest

from robot_rl.algos import ALGOS
from robot_rl.cli.common import config_dir, group_options
from robot_rl.envs import ENV_IDS, TASKS
from robot_rl.policies import POLICIES
from robot_rl.rewards import REWARDS
from robot_rl.teleop import TELEOP

pytestmark = pytest.mark.unit


def _trainable_policies() -> list[str]:
    return [n for n in POLICIES.names() if getattr(POLICIES.get(n), "trainable_base", True)]


@pytest.mark.parametrize(
    ("group", "registry"), [("algo", ALGOS), ("policy", POLICIES), ("reward", REWARDS), ("teleop", TELEOP)]
)
def test_name_equals_module_equals_config_option(group, registry):
    names = _trainable_policies() if group == "policy" else registry.names()
    assert names == group_options(group)
    for name in registry.names():
        cls = registry.get(name)
        assert cls.__module__.rsplit(".", 1)[-1] == name
        assert registry.config_cls(name)().name == name
    for name in names:
        assert f"/schema/{group}/{name}@_here_" in (config_dir() / group / f"{name}.yaml").read_text()


def test_task_options_match_task_registry():
    assert set(group_options("task")) == set(TASKS.names()) == set(ENV_IDS)
    for name in TASKS.names():
        assert f"env_id: {ENV_IDS[name]}" in (Path(config_dir()) / "task" / f"{name}.yaml").read_text()


def _assert_same_state(a, b):
    import torch

    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_same_state(a[key], b[key])
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)


@pytest.mark.parametrize("policy", _trainable_policies())
def test_policy_imitation_update_and_state_round_trip(train_config, policy):
    from robot_rl.data.demos import ChunkDataset
    from robot_rl.trainer import Trainer

    trainer = Trainer(train_config(policy=policy))
    episodes = trainer.collect_demos()
    ds = ChunkDataset(episodes, trainer.cfg.policy.obs_horizon, trainer.cfg.policy.chunk_size)
    metrics = trainer.imitation.update(ds.sample(8, trainer.rng))
    assert metrics and all(k.startswith(("loss/", "train/")) for k in metrics)
    assert all(v == v for v in metrics.values())  # no NaN
    other = Trainer(train_config(policy=policy, seed=1))
    other.imitation.load_state_dict(trainer.imitation.state_dict())
    _assert_same_state(trainer.imitation.state_dict(), other.imitation.state_dict())


@pytest.mark.parametrize("algo", [n for n in ALGOS.names() if getattr(ALGOS.get(n), "online", False)])
def test_online_algo_update_state_round_trip_and_bundle(train_config, tmp_path, algo):
    import numpy as np

    import robot_rl
    from robot_rl.core.replay import MixedSampler
    from robot_rl.trainer import Trainer

    trainer = Trainer(train_config(algo=algo))
    trainer.demos = trainer.collect_demos()
    trainer._build_buffers()
    batch = MixedSampler(trainer.online_buffer, trainer.prior_buffer).sample(16, trainer.rng)
    metrics = trainer.algo.update(batch, update_actor=True)
    assert "loss/critic" in metrics
    # the policy's own loss: an actor (SAC family, residual), an edit policy or the base (EXPO, PA-RL)
    assert {"loss/actor", "loss/edit", "loss/base"} & metrics.keys()
    assert all(np.isfinite(v) for k, v in metrics.items() if k.startswith("loss/"))
    other = Trainer(train_config(algo=algo, seed=1))
    other.algo.load_state_dict(trainer.algo.state_dict())
    _assert_same_state(trainer.algo.state_dict(), other.algo.state_dict())
    path = trainer.algo.export_bundle(tmp_path / "bundle")
    policy = robot_rl.load_policy(path)
    policy.reset()
    env = trainer._make_online_env()
    obs, _ = env.reset(seed=0)
    agent = getattr(trainer.algo, "agent", None)  # a stochastic re-ranking agent: same seed on both sides
    for p in (policy, agent):
        if hasattr(p, "seed"):
            p.seed(0)
    np.testing.assert_allclose(policy.act(obs), trainer.algo.act(obs, deterministic=True), atol=1e-6)
    env.close()
