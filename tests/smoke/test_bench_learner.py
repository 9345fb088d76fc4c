"""Smoke: ``robot-rl-bench learner`` times SB3 SAC and ours at the sizes it is given."""

import json

import pytest

pytestmark = [pytest.mark.smoke, pytest.mark.sim]


def test_learner_benchmark_tiny_sizes(tmp_path, capsys):
    from robot_rl.benchmarks import learner

    out = tmp_path / "rows.json"
    argv = ["--learners=sb3_sac,sac", "--width=8", "--batch=4", "--updates=3", "--repeats=1", f"--out={out}"]
    assert learner.run(argv) == 0
    rows = json.loads(out.read_text())
    assert [r["learner"] for r in rows] == ["sb3_sac", "sac"]
    assert all(r["width"] == 8 and r["batch"] == 4 and r["updates_per_s"] > 0 for r in rows)
    assert "8x8 networks, batch 4" in capsys.readouterr().out


def test_learner_benchmark_rejects_a_zero_width(capsys):
    from robot_rl.benchmarks import learner

    assert learner.run(["--learners=sac", "--width=0"]) == 2
    assert "--width and --batch must be positive" in capsys.readouterr().err
