"""Default-tier learning test (marker ``ci_learning``, runs in CI): residual RL with the default
``residual`` settings lifts a weak ``bc_chunk`` base on Lift-v0 by >= 20 points within 6k env steps.

Calibration on 2 busy CPU cores (docs/rl.md "CI learning test"): the printed line below.
"""

import pytest

from robot_rl.benchmarks.policies import PRESETS
from tests.conftest import make_train_config

pytestmark = [pytest.mark.ci_learning, pytest.mark.sim]


def test_residual_improves_lift_base_within_6k_steps(tmp_path):
    from robot_rl.trainer import Trainer

    n_demos, noise = PRESETS["lift"]["base_for_rl"]
    cfg = make_train_config(
        tmp_path / "run",
        task="lift",
        algo="residual",
        **{
            "demos.n_episodes": n_demos,
            "demos.expert_noise": noise,
            "base.steps": 2000,
            "base.batch_size": 256,
            "train.env_steps": 6000,
            "train.eval_every": 100_000,  # only the step-0 and final evaluations
            "train.eval_episodes": 50,
            "train.log_every": 500,
            "train.checkpoint_every": 100_000,
            "eval.n_episodes": 50,
        },
    )
    trainer = Trainer(cfg)
    summary = trainer.run()
    base, refined = summary.base_result.success_rate, summary.eval_result.success_rate
    print(f"lift residual 6k steps: base {base:.2f} -> refined {refined:.2f}")
    assert trainer.history[0]["success_rate"] == base  # zero-init residual: step 0 is the base
    assert refined >= base + 0.2, (base, refined)
