"""``robot-rl-bench ros``: the latency / deadline summary on hand-worked records."""

from __future__ import annotations

import pytest

from robot_rl.benchmarks.ros import summarize


def test_summary_counts_late_and_unanswered_observations_as_deadline_misses():
    # 20 Hz: period 50 ms. Observation stamps (s) and the arrival of the command answering each.
    obs = [10.00, 10.05, 10.10, 10.15]
    answers = {10.00: 10.002, 10.05: 10.054, 10.10: 10.160, 99.0: 99.1}  # 10.15 never answered
    out = summarize(obs, answers, inference_ms=[0.5, 1.0, 60.0], holds=2, hz=20.0)
    # latencies 2, 4 and 60 ms (the answer to an unseen observation, 99.0, is ignored)
    assert out["observations"] == 4 and out["answered"] == 3 and out["unanswered"] == 1
    assert out["late"] == 1  # 60 ms > 50 ms
    assert out["deadline_misses"] == 2
    assert out["latency_ms_p50"] == pytest.approx(4.0, abs=1e-6)
    assert out["latency_ms_max"] == pytest.approx(60.0, abs=1e-6)
    # numpy's linear percentile over [2, 4, 60]: position 0.99 * 2 = 1.98, so 4 + 0.98 * (60 - 4)
    assert out["latency_ms_p99"] == pytest.approx(4.0 + 0.98 * 56.0, abs=1e-3)
    assert out["inference_ms_p50"] == pytest.approx(1.0)
    assert out["inference_over_period"] == 1 and out["watchdog_holds"] == 2


def test_summary_of_an_empty_window_has_no_percentiles():
    out = summarize([], {}, [], 0, hz=50.0)
    assert out["period_ms"] == 20.0 and out["latency_ms_p50"] is None and out["deadline_misses"] == 0
