"""Calibration of reward models on labelled episodes (robot_rl/rewards/calibration.py), by hand."""

import numpy as np
import pytest

from robot_rl.rewards.calibration import best_f1_threshold, calibrate, calibrate_scores, isotonic_increasing
from robot_rl.rewards.interface import RewardRequest, RewardResult, failed_result

pytestmark = pytest.mark.unit


def test_best_f1_threshold_by_hand():
    probs = np.array([0.1, 0.4, 0.6, 0.9])
    labels = np.array([0, 1, 0, 1])
    # predicting the top k: k=1 (τ = 0.75): P 1 R 1/2 → F1 0.667; k=2 (τ = 0.5): P 1/2 R 1/2 → 0.5;
    # k=3 (τ = 0.25): P 2/3 R 1 → 0.8; k=4 (τ = 0.05): P 1/2 R 1 → 0.667
    best = best_f1_threshold(probs, labels)
    assert best["threshold"] == pytest.approx(0.25) and best["f1"] == pytest.approx(0.8)
    assert best["precision"] == pytest.approx(2 / 3) and best["recall"] == 1.0
    # separable classes: the cut lies in the middle of the gap, (0.6 + 0.2) / 2
    best = best_f1_threshold(np.array([0.1, 0.2, 0.6, 0.7, 0.8]), np.array([0, 0, 1, 1, 1]))
    assert best["threshold"] == pytest.approx(0.4) and best["f1"] == 1.0
    # ties: equal probabilities are one cut
    best = best_f1_threshold(np.array([0.5, 0.5, 0.2]), np.array([1, 1, 0]))
    assert best["threshold"] == pytest.approx(0.35) and best["precision"] == 1.0


def test_isotonic_increasing_pools_adjacent_violators_by_weight():
    # 0.6 (weight 1) before 0.45 (weight 2) violates the order: both become (0.6 + 2·0.45) / 3 = 0.5
    np.testing.assert_allclose(
        isotonic_increasing(np.array([0.1, 0.6, 0.45, 1.0]), np.array([2, 1, 2, 1])), [0.1, 0.5, 0.5, 1.0]
    )
    np.testing.assert_allclose(isotonic_increasing(np.array([3.0, 2.0, 1.0]), np.ones(3)), [2.0, 2.0, 2.0])
    np.testing.assert_allclose(isotonic_increasing(np.array([0.0, 1.0]), np.ones(2)), [0.0, 1.0])


def test_calibrate_scores_by_hand():
    scores = [1, 1, 2, 3, 3, 5]
    success = [False, False, False, False, True, True]
    # success = score ≥ k: k=5: P 1, R 1/2 (F1 0.667); k=3: P 2/3, R 1 (F1 0.8, the best);
    # k=2: P 1/2, R 1 (0.667) → the cut is halfway between 3 and 2, so success_score 3
    fit = calibrate_scores(scores, success, progress=[0.0, 0.2, 0.6, 0.4, 0.5, 1.0])
    assert fit["success_score"] == 3 and fit["f1"] == pytest.approx(0.8)
    assert fit["precision"] == pytest.approx(2 / 3) and fit["recall"] == 1.0
    # mean progress per score: 1: 0.1, 2: 0.6, 3: 0.45, 4: none, 5: 1.0; 2 and 3 pool to 0.5;
    # score 4 keeps the default 0.75 (inside [0.5, 1.0])
    np.testing.assert_allclose(fit["progress"], [0.1, 0.5, 0.5, 0.75, 1.0])
    assert fit["counts"] == [2, 1, 2, 0, 1]
    # without progress labels the table is the success rate per score
    np.testing.assert_allclose(calibrate_scores(scores, success)["progress"], [0.0, 0.0, 0.5, 0.75, 1.0])
    # unseen scores above a fitted 1.0 are clipped to it (defaults 0.5, 0.75 would break the order)
    fit = calibrate_scores([1, 2, 2], [False, True, True])
    assert fit["success_score"] == 2
    np.testing.assert_allclose(fit["progress"], [0.0, 1.0, 1.0, 1.0, 1.0])


@pytest.mark.parametrize(
    "scores, success, progress, match",
    [
        ([1, 6], [False, True], None, "scores must be in 1..5"),
        ([1, 5], [True, True], None, "need both successful and failed"),
        ([1, 5], [False], None, "need as many"),
        ([1, 5], [False, True], [0.0, 1.5], r"progress labels must be in \[0, 1\]"),
    ],
)
def test_calibrate_scores_rejects_bad_labels(scores, success, progress, match):
    with pytest.raises(ValueError, match=match):
        calibrate_scores(scores, success, progress)


class ScriptedJudge:
    """Answers the score named in each request's task ("3"), or a parse failure for "?"."""

    model_id = "scripted"

    def score(self, req):
        return self.score_batch([req])[0]

    def score_batch(self, reqs):
        out = []
        for req in reqs:
            if req.task == "?":
                out.append(
                    failed_result(
                        req, error="parse", raw_text="??", model_id="s", model_revision="r", prompt_hash="h"
                    )
                )
            else:
                k = int(req.task)
                out.append(RewardResult(k, 0.0, k == 5, float(k == 5), True, f"ANSWER: {k}", "s", "r", "h"))
        return out


def test_calibrate_runs_the_model_and_leaves_flagged_results_out():
    frames = np.zeros((2, 4, 4, 3), np.uint8)
    tasks = ["1", "2", "4", "4", "5", "?"]
    # the flagged request is labelled a success: kept, it would change the fit
    fit = calibrate(
        ScriptedJudge(), [RewardRequest(frames, t) for t in tasks], [False, False, True, True, True, True]
    )
    assert fit["n_used"] == 5 and fit["n_flagged"] == 1
    # the best cut lies halfway between 4 and 2, on the unseen 3, which counts as a failure
    assert fit["success_score"] == 4 and fit["precision"] == 1.0 and fit["recall"] == 1.0
    np.testing.assert_allclose(fit["progress"], [0.0, 0.0, 0.5, 1.0, 1.0])  # score 3 unseen: default 0.5
    with pytest.raises(ValueError, match="all 1 results were flagged"):
        calibrate(ScriptedJudge(), [RewardRequest(frames, "?")], [True])
    with pytest.raises(ValueError, match="one success label"):
        calibrate(ScriptedJudge(), [RewardRequest(frames, "1")], [True, False])
