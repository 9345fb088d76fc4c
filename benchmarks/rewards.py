"""Reward-model benchmark: train the video + text stand-in (``robot_rl/rewards/standin.py``) on rendered
Lift rollouts and measure it on held-out rollouts against the issue's bars.

``robot-rl-bench rewards [--train-episodes 240] [--test-episodes 80] [--epochs 40] [--seed 0]
[--counterfactuals 2] [--save DIR] [--threads N] [--out result.json]``

Train and test rollouts come from different env seeds (``seed`` and ``seed + 1``). Reported:
- MAE on the 1-5 scale over all held-out clips (whole episodes, prefixes, counterfactual
  instructions) and per kind (bar: < 0.6);
- counterfactual sensitivity: for every held-out episode whose true score is ≥ 2, the score of the
  whole clip with a wrong instruction (another colour) must be lower than with the right one (bar:
  ≥ 90 % of pairs; a tie counts as a failure);
- prefix monotonicity on held-out successful episodes: Spearman ρ between the prefix end
  (10 %, 20 %, ..., 100 % of the episode) and the score, per episode, averaged (bar: > 0.8; an
  episode whose scores are all equal counts as ρ = 0). Also printed: the same ρ of the expected
  score Σ k·p(k) (the model's probabilities, which break the ties of a 5-level answer) and of the
  true labels themselves: noisy rollouts regress (re-grasps) and most of an episode is rubric 1, so
  even a perfect integer answer reaches only 0.887 on the default held-out rollouts.
``--save`` writes the trained model for ``reward=standin reward.path=DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman ρ with average ranks for ties; 0 when one side is constant."""

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=np.float64)
        for value in np.unique(v):  # average the ranks of ties
            tie = v == value
            r[tie] = r[tie].mean()
        return r

    rx, ry = ranks(np.asarray(x, np.float64)), ranks(np.asarray(y, np.float64))
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def measure(model: Any, test: list, seed: int) -> dict[str, Any]:
    """MAE per clip kind, counterfactual drop rate and prefix Spearman ρ on held-out rollouts."""
    from robot_rl.rewards.standin import Clip, counterfactual_task, make_clips, predict_probs, predict_scores

    clips = make_clips(test, seed=seed + 1)
    pred = predict_scores(model, test, clips)
    truth = np.array([c.label for c in clips])
    kinds = np.array([c.kind for c in clips])
    mae = {k: float(np.abs(pred - truth)[kinds == k].mean()) for k in ("full", "prefix", "counterfactual")}
    mae["all"] = float(np.abs(pred - truth).mean())
    # counterfactual pairs: the whole clip, right vs wrong instruction
    rng = np.random.default_rng(seed + 2)
    pairs = []
    for r, ro in enumerate(test):
        last = len(ro.frames) - 1
        if ro.rubric[last] >= 2 and (wrong := counterfactual_task(ro.task, rng)) is not None:
            pairs += [Clip(r, last, ro.task, 0, "full"), Clip(r, last, wrong, 0, "counterfactual")]
    pair_scores = predict_scores(model, test, pairs).reshape(-1, 2)
    drops = float(np.mean(pair_scores[:, 1] < pair_scores[:, 0])) if len(pair_scores) else float("nan")
    # prefix monotonicity on successful episodes
    fractions = np.linspace(0.1, 1.0, 10)
    rhos, rhos_expected, rhos_oracle = [], [], []
    for r, ro in enumerate(test):
        if ro.success:
            last = len(ro.frames) - 1
            ends = [max(round(f * last), 1) for f in fractions]
            probs = predict_probs(model, test, [Clip(r, t, ro.task, 0, "prefix") for t in ends])
            rhos.append(spearman(fractions, probs.argmax(1) + 1))
            rhos_expected.append(spearman(fractions, probs @ np.arange(1.0, 6.0)))
            rhos_oracle.append(spearman(fractions, ro.rubric[ends]))  # the true labels' own ρ
    return {
        "mae": mae,
        "drops": drops,
        "rhos": rhos,
        "rhos_expected": rhos_expected,
        "rhos_oracle": rhos_oracle,
        "clips": clips,
        "kinds": kinds,
        "pair_scores": pair_scores,
    }


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="robot-rl-bench rewards", description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-episodes", type=int, default=240)
    parser.add_argument("--test-episodes", type=int, default=80)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--counterfactuals", type=int, default=2, help="wrong-instruction twins of each training clip"
    )
    parser.add_argument("--save", default="")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    import torch

    from robot_rl.core.errors import ConfigError
    from robot_rl.rewards.standin import check_counterfactuals

    try:
        check_counterfactuals(args.counterfactuals)  # before minutes of rendering
    except ConfigError as err:
        print(f"error: --{err}", file=sys.stderr)
        return 2

    from robot_rl.rewards.standin import (
        StandInTrainConfig,
        collect_rollouts,
        make_clips,
        save_standin,
        train_standin,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    train = collect_rollouts(args.train_episodes, seed=args.seed)
    test = collect_rollouts(args.test_episodes, seed=args.seed + 1)
    t_data = time.perf_counter() - t0
    cfg = StandInTrainConfig(epochs=args.epochs, seed=args.seed)
    train_clips = make_clips(
        train, seed=args.seed, counterfactual_prefixes=True, counterfactuals=args.counterfactuals
    )
    model, report = train_standin(train, train_clips, cfg)
    metrics = measure(model, test, args.seed)
    mae, drops, rhos = metrics["mae"], metrics["drops"], metrics["rhos"]
    clips, kinds, pair_scores = metrics["clips"], metrics["kinds"], metrics["pair_scores"]
    truth = np.array([c.label for c in clips])
    result = {
        "train_episodes": len(train),
        "train_clips": report["clips"],
        "test_episodes": len(test),
        "test_clips": len(clips),
        "test_success_episodes": int(sum(ro.success for ro in test)),
        "label_counts": {int(k): int((truth == k).sum()) for k in range(1, 6)},
        "mae": mae,
        "counterfactual_pairs": len(pair_scores),
        "counterfactual_drop_rate": drops,
        "spearman_mean": float(np.mean(rhos)) if rhos else float("nan"),
        "spearman_expected_mean": float(np.mean(metrics["rhos_expected"])) if rhos else float("nan"),
        "spearman_oracle_mean": float(np.mean(metrics["rhos_oracle"])) if rhos else float("nan"),
        "spearman_videos": len(rhos),
        "data_s": t_data,
        "train_s": report["train_s"],
    }
    print(json.dumps(result))
    ok = {
        "MAE < 0.6": mae["all"] < 0.6,
        "wrong instruction lowers the score in >= 90 % of pairs": drops >= 0.9,
        "prefix Spearman > 0.8": result["spearman_mean"] > 0.8,
    }
    print("\n| metric | value | bar | met |\n|---|---:|---|---|")
    print(f"| MAE, all held-out clips ({len(clips)}) | {mae['all']:.3f} | < 0.6 | {ok['MAE < 0.6']} |")
    for k in ("full", "prefix", "counterfactual"):
        print(f"| MAE, {k} clips ({int((kinds == k).sum())}) | {mae[k]:.3f} | | |")
    print(
        f"| wrong instruction scores lower ({len(pair_scores)} pairs) | {drops:.1%} | ≥ 90 % | "
        f"{ok['wrong instruction lowers the score in >= 90 % of pairs']} |"
    )
    print(
        f"| prefix Spearman, mean over {len(rhos)} successful episodes | {result['spearman_mean']:.3f} | "
        f"> 0.8 | {ok['prefix Spearman > 0.8']} |"
    )
    print(
        f"| prefix Spearman of the expected score Σ k·p(k) | {result['spearman_expected_mean']:.3f} | "
        f"> 0.8 | {result['spearman_expected_mean'] > 0.8} |"
    )
    print(
        f"| prefix Spearman of the true 1-5 labels (the ceiling for an integer score) | "
        f"{result['spearman_oracle_mean']:.3f} | | |"
    )
    print(f"\ndata {t_data:.0f} s, training {report['train_s']:.0f} s")
    if args.save:
        meta = {"channels": cfg.channels, "hidden": cfg.hidden, "report": result}
        print(f"saved: {save_standin(args.save, model, meta)}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0
