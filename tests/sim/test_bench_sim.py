"""Smoke test of the simulation-speed benchmark (``robot-rl-bench sim --quick``)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mujoco")

from robot_rl.benchmarks import sim as bench_sim

pytestmark = [pytest.mark.sim]


def test_quick_run_writes_json_and_ratios(tmp_path, capsys):
    out = tmp_path / "bench" / "sim.json"
    argv = ["--quick", "--steps", "10", "--tasks", "reach", "--peers", "robosuite,fetch", "--out", str(out)]
    assert bench_sim.run([*argv, "--markdown"]) == 0
    printed = capsys.readouterr().out
    assert "| env |" in printed and "steps/s" in printed

    result = json.loads(out.read_text())
    assert result["settings"] == {"steps": 10, "warmup": 5, "repeats": 1, "seed": 0}
    assert result["machine"]["cpus"] >= 1 and "mujoco" in result["machine"]["versions"]
    rows = {r["name"]: r for r in result["results"]}
    assert len(rows) == 3
    for row in rows.values():
        if row["status"] == "skipped":  # an optional package (robosuite, gymnasium-robotics) or task missing
            assert row["note"].startswith("not available")
            continue
        assert row["status"] == "ok", row
        assert row["steps_per_s"] > 0 and len(row["repeats_steps_per_s"]) == 1
        assert 0 < row["mj_step_fraction"] < 1 and row["mj_steps_per_env_step"] >= 1
        assert row["realtime_factor"] == pytest.approx(row["steps_per_s"] / row["control_hz"])
    fetch = rows["gymnasium-robotics FetchPickAndPlace-v4"]
    robosuite = rows["robosuite Lift (raw)"]
    if fetch["status"] == "ok":
        assert fetch["vs_fetch"] == pytest.approx(1.0)
    if robosuite["status"] == "ok":
        assert robosuite["mj_steps_per_env_step"] == 25  # 20 Hz control, 2 ms physics step
        assert robosuite["vs_robosuite"] == pytest.approx(1.0)


def test_bad_arguments_exit_2(capsys):
    assert bench_sim.run(["--tasks", "nope"]) == 2
    assert bench_sim.run(["--steps", "0", "--no-peers", "--tasks", "none"]) == 2
    assert "allowed" in capsys.readouterr().err


def test_no_tasks_no_peers_is_empty_but_ok(capsys):
    assert bench_sim.run(["--quick", "--tasks", "none", "--no-peers"]) == 0
    assert "wall time" in capsys.readouterr().out
