"""Smoke: ``robot-rl-bench residual`` runs both arms end to end on a tiny budget and writes its table."""

import json

import pytest

pytestmark = [pytest.mark.smoke, pytest.mark.sim]


def test_residual_benchmark_tiny_budget(tmp_path, capsys):
    from robot_rl.benchmarks import residual

    out = tmp_path / "result.json"
    code = residual.run(
        [
            "--tasks=reach",
            "--seeds=0",
            "--env-steps=200",
            "--eval-every=100",
            "--eval-episodes=2",
            "--arms=residual,sb3_sac",
            "--set=base.steps=20",
            "--set=demos.n_episodes=2",
            "--set=algo.warmup_env_steps=50",
            "--set=algo.critic_warmup_updates=5",
            "--set=algo.offline_updates=10",  # WSRL pre-trains 5000 by default
            "--set=algo.batch_size=16",
            f"--out={out}",
        ]
    )
    assert code == 0
    rows = json.loads(out.read_text())
    assert [r["arm"] for r in rows] == ["residual", "sb3_sac"]
    residual_row = rows[0]
    assert residual_row["history"][0]["env_step"] == 0  # step-0 evaluation = the base
    assert residual_row["history"][0]["success"] == residual_row["base"]
    assert residual_row["overrides"]["base.steps"] == "20"
    assert "| reach | residual | 0 |" in capsys.readouterr().out


def test_residual_benchmark_rejects_bad_set(capsys):
    from robot_rl.benchmarks import residual

    assert residual.run(["--set", "algo.utd"]) == 2
    assert "--set expects KEY=VALUE" in capsys.readouterr().err


def test_finetune_benchmark_runs_every_method_on_a_tiny_budget(tmp_path, capsys):
    """Each arm of ``robot-rl-bench finetune`` and one named ablation, end to end on Reach."""
    from robot_rl.benchmarks import finetune

    out = tmp_path / "result.json"
    tiny = ["--set=base.steps=20", "--set=demos.n_episodes=2", "--set=algo.warmup_env_steps=50"]
    code = finetune.run(
        [
            "--tasks=reach",
            "--seeds=0",
            "--env-steps=150",
            "--eval-every=150",
            "--eval-episodes=2",
            "--arms=expo,pa_rl,wsrl",
            "--ablations=expo/no_edit",
            "--set=algo.critic_warmup_updates=5",
            "--set=algo.offline_updates=10",  # WSRL pre-trains 5000 by default
            "--set=algo.batch_size=16",
            *tiny,
            f"--out={out}",
        ]
    )
    assert code == 0
    rows = json.loads(out.read_text())
    assert [r["arm"] for r in rows] == ["expo", "pa_rl", "wsrl", "expo/no_edit"]
    for row in rows[:2]:  # the base-training methods report the fine-tuned base alone
        assert row["finetuned_base"] is not None and row["overrides"]["experiment"] == row["arm"]
    assert rows[3]["overrides"]["algo.num_edits"] == "0"
    assert "| reach | expo/no_edit | 0 |" in capsys.readouterr().out
    assert finetune.run(["--arms=nope"]) == 2
