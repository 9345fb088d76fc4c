"""Calibrating reward models on held-out labelled episodes (ALGORITHMS.md §8(f), §11.11).

A judge trained or prompted elsewhere (RoboReward on real videos, the stand-in on other seeds) sees a
shifted distribution on a new robot or in a new scene, so its success threshold and its
score → progress table are fitted on episodes whose outcome is known:

* :func:`best_f1_threshold`: the cut of a continuous score with the best F1 (the success
  classifier's calibration).
* :func:`calibrate_scores`: for 1..5 scores, ``success_score`` (success = score ≥ it, the best-F1
  cut) and ``progress`` (per score, the mean true progress of the episodes given that score, made
  non-decreasing).
* :func:`calibrate`: runs any :class:`~robot_rl.rewards.interface.RewardModel` on labelled requests
  and fits both; flagged results (parse failures, timeouts) are counted and left out.

The output's ``success_score`` and ``progress`` are the ``reward.success_score`` /
``reward.progress`` settings of the ``vlm`` and ``standin`` back-ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from robot_rl.rewards.interface import DEFAULT_SCORE_TO_PROGRESS, RewardModel, RewardRequest

N_SCORES = 5


def best_f1_threshold(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The threshold with the best F1 of ``probs >= τ`` on ``labels``, with its precision and recall.

    Candidate thresholds lie halfway between consecutive distinct probabilities (sorted descending,
    predicting the top k as successes), so a gap between the classes is cut in its middle rather
    than at its edge; among equally good cuts the median one is taken."""
    order = np.argsort(-probs, kind="stable")
    p, y = probs[order], (labels[order] > 0).astype(np.float64)
    n_pos = max(float(y.sum()), 1.0)
    tp = np.cumsum(y)  # predicting the top k (k = index + 1) as successes
    k = np.arange(1, len(p) + 1, dtype=np.float64)
    cuts = np.flatnonzero(np.append(p[:-1] > p[1:], True))  # last index of each distinct value
    precision, recall = tp[cuts] / k[cuts], tp[cuts] / n_pos
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    below = np.append(p[cuts[:-1] + 1], 0.0)  # the next lower probability (0 after the last cut)
    taus = (p[cuts] + below) / 2
    plateau = np.flatnonzero(f1 >= f1.max() - 1e-12)
    i = plateau[(len(plateau) - 1) // 2]
    return {
        "threshold": float(taus[i]),
        "precision": float(precision[i]),
        "recall": float(recall[i]),
        "f1": float(f1[i]),
    }


def isotonic_increasing(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted least-squares non-decreasing fit of ``values`` (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for v, w in zip(values.astype(np.float64), weights.astype(np.float64), strict=True):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m2, w2, n2), (m1, w1, n1) = blocks.pop(), blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([np.full(n, m) for m, _, n in blocks])


def calibrate_scores(
    scores: Sequence[int],
    success: Sequence[bool],
    progress: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Fit ``success_score`` and the score → progress table to labelled 1..5 scores.

    Args:
        scores: the model's score of each held-out episode, in 1..5.
        success: whether each episode truly succeeded.
        progress: its true progress in [0, 1] (None: the success labels, so the table becomes the
            success rate per score).
    Returns:
        ``success_score`` (the best-F1 cut: success = score ≥ it; the cut lies halfway between
        neighbouring scores, and an unseen score on it counts as a failure), its ``precision``, ``recall`` and
        ``f1``; ``progress``: five values for scores 1..5, the mean true progress per score made
        non-decreasing (a score no episode received keeps the default table's value, clipped
        between its fitted neighbours); ``counts`` per score.
    """
    s = np.asarray(scores, dtype=np.int64)
    y = np.asarray(success, dtype=bool)
    target = y.astype(np.float64) if progress is None else np.asarray(progress, dtype=np.float64)
    if len(s) == 0 or len(s) != len(y) or len(target) != len(s):
        raise ValueError(
            f"need as many scores, success labels and progress values (got {len(s)}, {len(y)}, {len(target)})"
        )
    if s.min() < 1 or s.max() > N_SCORES:
        raise ValueError(f"scores must be in 1..{N_SCORES}, got {sorted(set(s.tolist()))}")
    if not y.any() or y.all():
        raise ValueError(
            f"need both successful and failed episodes, got {int(y.sum())} of {len(y)} successful"
        )
    if np.any(target < 0) or np.any(target > 1):
        raise ValueError("progress labels must be in [0, 1]")
    cut = best_f1_threshold(s.astype(np.float64), y)
    # the lowest score above the cut; a score no episode got that lies exactly on the cut (the
    # middle of a gap) counts as a failure: false successes are what a policy learns to exploit
    success_score = int(np.clip(np.floor(cut["threshold"]) + 1, 1, N_SCORES))
    counts = np.bincount(s - 1, minlength=N_SCORES)
    seen = counts > 0
    means = np.bincount(s - 1, weights=target, minlength=N_SCORES)[seen] / counts[seen]
    table = np.array([DEFAULT_SCORE_TO_PROGRESS[k] for k in range(1, N_SCORES + 1)])
    table[seen] = isotonic_increasing(means, counts[seen])
    for k in np.flatnonzero(~seen):  # unseen scores: the default, kept between the fitted neighbours
        lower = table[:k][seen[:k]].max(initial=0.0)
        upper = table[k + 1 :][seen[k + 1 :]].min(initial=1.0)
        table[k] = np.clip(table[k], lower, upper)
    return {
        "success_score": success_score,
        "precision": cut["precision"],
        "recall": cut["recall"],
        "f1": cut["f1"],
        "progress": [float(v) for v in table],
        "counts": [int(c) for c in counts],
    }


def calibrate(
    model: RewardModel,
    requests: Sequence[RewardRequest],
    success: Sequence[bool],
    progress: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Score ``requests`` (held-out episodes with known outcomes) and fit :func:`calibrate_scores`.

    Flagged results are never calibrated on; ``n_used`` and ``n_flagged`` say how many were kept.
    """
    if len(requests) != len(success) or (progress is not None and len(progress) != len(requests)):
        raise ValueError("need one success label (and progress value) per request")
    results = model.score_batch(list(requests))
    keep = [i for i, r in enumerate(results) if r.usable and r.score_raw is not None]
    if not keep:
        raise ValueError(
            f"all {len(results)} results were flagged (parse failures or timeouts); nothing to fit"
        )
    fit = calibrate_scores(
        [results[i].score_raw for i in keep],
        [success[i] for i in keep],
        None if progress is None else [progress[i] for i in keep],
    )
    return {**fit, "n_used": len(keep), "n_flagged": len(results) - len(keep)}
