"""``robot-rl-bench ros`` end to end for a few seconds: the graph starts, the probe pairs every
observation with the command that answers it. Timing figures belong to the benchmark, not here."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.sim]
pytest.importorskip("rclpy", reason="rclpy not installed (pip install 'robot-rl[ros]')")
pytest.importorskip("mujoco", reason="mujoco not installed (pip install 'robot-rl[sim]')")


def test_ros_bench_measures_the_control_loop(tmp_path, capsys):
    from robot_rl.benchmarks.ros import run

    out = tmp_path / "ros.json"
    args = ["--policies", "bc_chunk", "--hz", "20", "--duration", "3", "--warmup", "1", "--out", str(out)]
    assert run(args) == 0
    (row,) = json.loads(out.read_text())
    # 3 s at 20 Hz: about 60 observations, each answered (or counted as unanswered)
    assert 45 <= row["observations"] <= 75
    assert row["answered"] + row["unanswered"] == row["observations"]
    assert row["answered"] > 0.5 * row["observations"], row
    assert row["latency_ms_p50"] > 0 and row["inference_ms_p50"] > 0
    assert "| bc_chunk | 20 |" in capsys.readouterr().out
