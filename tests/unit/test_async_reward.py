"""AsyncRewardScorer (robot_rl/rewards/async_scorer.py): never blocks, never raises into the caller."""

import threading
import time

import numpy as np
import pytest

from robot_rl.rewards.async_scorer import AsyncRewardScorer
from robot_rl.rewards.interface import RewardRequest, RewardResult

pytestmark = pytest.mark.unit


def request(i: int) -> RewardRequest:
    return RewardRequest(np.zeros((2, 4, 4, 3), np.uint8), "lift the cube", episode_id=f"ep{i}")


class FakeModel:
    """Scores every request 5 (success) after ``delay`` seconds; raises when ``fail`` is set."""

    model_id = "fake"

    def __init__(self, delay: float = 0.0, fail: bool = False):
        self.delay, self.fail = delay, fail
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def score_batch(self, reqs):
        self.gate.wait()
        time.sleep(self.delay)
        self.batches.append(len(reqs))
        if self.fail:
            raise RuntimeError("CUDA out of memory")
        return [
            RewardResult(5, 1.0, True, 1.0, True, "ANSWER: 5", "fake", "", "h", episode_id=r.episode_id)
            for r in reqs
        ]


def drain(scorer: AsyncRewardScorer, n: int, timeout: float = 5.0) -> list[RewardResult]:
    out: list[RewardResult] = []
    deadline = time.perf_counter() + timeout
    while len(out) < n and time.perf_counter() < deadline:
        out += scorer.poll()
        time.sleep(0.005)
    return out


def test_results_arrive_in_order_in_batches_without_blocking_submit():
    model = FakeModel(delay=0.05)
    model.gate.clear()  # hold the worker so that the requests queue up
    with AsyncRewardScorer(model, batch_size=3) as scorer:
        t0 = time.perf_counter()
        assert all(scorer.submit(request(i)) for i in range(7))
        assert time.perf_counter() - t0 < 0.05  # submit never waits for the model
        assert scorer.poll() == [] and scorer.pending == 7
        model.gate.set()
        results = drain(scorer, 7)
    assert [r.episode_id for r in results] == [f"ep{i}" for i in range(7)]
    assert all(r.usable and r.latency_ms > 0 for r in results)
    assert sum(model.batches) == 7 and max(model.batches) <= 3
    assert scorer.completed == 7 and scorer.failed == 0 and scorer.pending == 0


def test_a_full_queue_rejects_instead_of_blocking():
    model = FakeModel()
    model.gate.clear()
    scorer = AsyncRewardScorer(model, max_pending=2, batch_size=1)
    accepted = [scorer.submit(request(i)) for i in range(6)]
    assert accepted.count(False) >= 3 and scorer.rejected == accepted.count(False)
    model.gate.set()
    assert len(drain(scorer, accepted.count(True))) == accepted.count(True)
    scorer.close()


def test_a_failing_model_gives_flagged_results_not_exceptions():
    with AsyncRewardScorer(FakeModel(fail=True)) as scorer:
        scorer.submit(request(0))
        (res,) = drain(scorer, 1)
    assert not res.usable and res.error == "model" and "out of memory" in res.raw_text
    assert res.episode_id == "ep0" and res.progress == 0.0 and not res.success
    assert scorer.failed == 1


def test_late_results_are_flagged_as_timeouts():
    with AsyncRewardScorer(FakeModel(delay=0.2), timeout_s=0.05) as scorer:
        scorer.submit(request(0))
        (res,) = drain(scorer, 1)
    assert not res.usable and res.error == "timeout" and res.raw_text == "ANSWER: 5"


def test_bad_arguments_raise_one_line_errors():
    with pytest.raises(ValueError, match="max_pending and batch_size must be >= 1"):
        AsyncRewardScorer(FakeModel(), max_pending=0)
    with pytest.raises(ValueError, match="timeout_s must be >= 0"):
        AsyncRewardScorer(FakeModel(), timeout_s=-1)
