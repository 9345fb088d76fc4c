"""Default-tier learning test (marker ``ci_learning``, runs in CI): residual RL with the default
``residual`` settings lifts a weak ``bc_chunk`` base on Lift-v0 by >= 12 points within 10k env steps,
on the held-out evaluation seeds (robot_rl.core.seeds).

Calibration (docs/rl.md "CI learning test"): seeds 0 / 1 / 2 gained +24 / +16 / +28 points.
"""

import pytest

from robot_rl.benchmarks.policies import PRESETS
from tests.conftest import make_train_config

pytestmark = [pytest.mark.ci_learning, pytest.mark.sim]


def test_residual_improves_lift_base_within_10k_steps(tmp_path):
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
            "train.env_steps": 10_000,
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
    print(f"lift residual 10k steps: base {base:.2f} -> refined {refined:.2f}")
    # zero-init residual (step 0 is the base) is checked exactly in tests/unit/test_rl_core.py; the
    # in-training evaluations use their own seeds, so they are not compared with the base here
    assert trainer.history[0]["env_step"] == 0
    assert refined >= base + 0.12, (base, refined)
