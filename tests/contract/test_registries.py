"""Every registered algorithm, policy, task and reward model obeys its contract."""

from pathlib import Path

import pytest

from robot_rl.algos import ALGOS
from robot_rl.cli.common import config_dir, group_options
from robot_rl.envs import ENV_IDS, TASKS
from robot_rl.policies import POLICIES
from robot_rl.rewards import REWARDS

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("group", "registry"), [("algo", ALGOS), ("policy", POLICIES), ("reward", REWARDS)])
def test_name_equals_module_equals_config_option(group, registry):
    assert registry.names() == group_options(group)
    for name in registry.names():
        cls = registry.get(name)
        assert cls.__module__.rsplit(".", 1)[-1] == name
        assert registry.config_cls(name)().name == name
        assert f"/schema/{group}/{name}@_here_" in (config_dir() / group / f"{name}.yaml").read_text()


def test_task_options_match_task_registry():
    assert set(group_options("task")) == set(TASKS.names()) == set(ENV_IDS)
    for name in TASKS.names():
        assert f"env_id: {ENV_IDS[name]}" in (Path(config_dir()) / "task" / f"{name}.yaml").read_text()


@pytest.mark.parametrize("algo", ALGOS.names())
@pytest.mark.parametrize("policy", POLICIES.names())
def test_algo_policy_update_and_state_round_trip(train_config, algo, policy):
    import torch

    from robot_rl.trainer import Trainer

    trainer = Trainer(train_config(algo=algo, policy=policy))
    episodes = trainer.collect_demos()
    from robot_rl.data.demos import ChunkDataset

    ds = ChunkDataset(episodes, trainer.cfg.policy.obs_horizon, trainer.cfg.policy.chunk_size)
    metrics = trainer.algo.update(ds.sample(8, trainer.rng))
    assert metrics and all(k.startswith(("loss/", "train/")) for k in metrics)
    assert all(v == v for v in metrics.values())  # no NaN
    state = trainer.algo.state_dict()
    other = Trainer(train_config(algo=algo, policy=policy, seed=1))
    other.algo.load_state_dict(state)
    for key, value in trainer.algo.state_dict()["policy"].items():
        assert torch.equal(other.algo.state_dict()["policy"][key], value)
