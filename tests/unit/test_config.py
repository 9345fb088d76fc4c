import dataclasses

import pytest

from robot_rl.config import DemoConfig, TaskConfig
from robot_rl.core.errors import ConfigError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"base.lr": -1}, "base.lr must be > 0, got -1"),
        ({"policy.chunk_size": 60}, "policy.chunk_size=60 is longer than the task horizon task.horizon=40"),
        ({"policy.execution_horizon": 9}, "policy.execution_horizon=9 exceeds policy.chunk_size=8"),
        ({"task.env_id": "robot_rl/Nope-v0"}, "task.env_id='robot_rl/Nope-v0' is not valid"),
        ({"task.obs_mode": "depth"}, "task.obs_mode='depth' is not valid; choose one of: state, pixels"),
        ({"demos.hesitation": 1.5}, r"demos.hesitation must be in \[0, 1\)"),
        ({"device": "tpu"}, "device='tpu' is not valid"),
    ],
)
def test_invalid_values_give_one_line_errors(train_config, overrides, message):
    from robot_rl.cli.common import UserError

    with pytest.raises((ConfigError, UserError), match=message) as info:
        train_config(**overrides)
    assert "\n" not in str(info.value)


def test_valid_config_is_frozen_dataclasses(train_config):
    cfg = train_config()
    assert dataclasses.is_dataclass(cfg) and cfg.policy.name == "bc_chunk" and cfg.algo.name == "bc"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]


def test_dataclass_validation_without_hydra():
    with pytest.raises(ConfigError, match="task.horizon must be > 0"):
        TaskConfig(horizon=0)
    with pytest.raises(ConfigError, match="demos.n_episodes must be > 0"):
        DemoConfig(n_episodes=0)


def test_trainer_rejects_dictconfig(train_config):
    from omegaconf import OmegaConf

    from robot_rl.trainer import Trainer

    with pytest.raises(TypeError, match="TrainConfig dataclass"):
        Trainer(OmegaConf.structured(train_config()))  # type: ignore[arg-type]


def test_experiment_preset_overrides_the_main_config(tmp_path):
    from robot_rl.cli.common import compose

    cfg = compose("train", {"experiment": "quick", "run_dir": str(tmp_path)})
    assert cfg.train.env_steps == 1000 and cfg.demos.n_episodes == 10 and cfg.algo.utd == 1
    cfg = compose("train", {"experiment": "quick", "train.env_steps": 7, "run_dir": str(tmp_path)})
    assert cfg.train.env_steps == 7  # the command line still wins


@pytest.mark.parametrize("preset", ["expo", "pa_rl"])
def test_fine_tuning_presets_build_a_single_step_diffusion_run(tmp_path, preset):
    from robot_rl.cli.common import compose

    cfg = compose("train", {"experiment": preset, "run_dir": str(tmp_path)})
    assert cfg.algo.name == preset and cfg.policy.name == "diffusion"
    assert (cfg.policy.obs_horizon, cfg.policy.chunk_size, cfg.policy.execution_horizon) == (1, 1, 1)
    cfg = compose("train", {"experiment": preset, "algo.num_samples": 6, "run_dir": str(tmp_path)})
    assert cfg.algo.num_samples == 6  # the command line still wins
