"""Base-policy benchmark: imitation success on our tasks and inference latency on one CPU thread.

``robot-rl-bench policies [--tasks lift,peg_insert] [--policies bc_chunk,diffusion]
[--presets expert,base_for_rl] [--episodes 50] [--seed 0] [--set KEY=VALUE ...] [--out result.json]``

Success: for each task × policy × demo preset, a base policy is trained by imitation
(``algo=bc``, the run's defaults: 50 demos, 2000 updates, batch 256) and evaluated on the fixed
seeds ``0 .. episodes-1`` (the same list for every row); success with its Wilson 95 % interval.
Presets (``PRESETS`` below): ``expert`` = zero-noise expert demos; ``base_for_rl`` = the noisy
demos the RL benchmarks start from (30-70 % base success is the target, leaving room for RL).
``--set KEY=VALUE`` (repeatable) adds a config override to every run, as on the ``robot-rl-train``
command line (e.g. ``--set policy.backbone=transformer``); each result row lists its overrides.

Latency (``--latency``, on by default): ``torch.set_num_threads(1)``; the median over 200 calls of
``act()`` that compute a new chunk (``bc_chunk`` with the MLP and with the transformer backbone;
``diffusion`` with DDIM-10 and with the real-time-iteration warm start), measured on a freshly
initialized policy of the default size (weights do not change the cost). Denoiser evaluations per
chunk are counted. ``--set`` does not apply to the latency rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# task -> preset -> (demo count, expert noise); base_for_rl values measured in docs/benchmarks.md
PRESETS: dict[str, dict[str, tuple[int, float]]] = {
    "reach": {"expert": (50, 0.0), "base_for_rl": (10, 1.0)},
    "push": {"expert": (50, 0.0), "base_for_rl": (50, 0.2)},
    "lift": {"expert": (50, 0.0), "base_for_rl": (50, 0.7)},
    "peg_insert": {"expert": (50, 0.0), "base_for_rl": (30, 0.15)},  # bc_chunk and diffusion: 30-62 %
}


def train_and_evaluate(
    task: str,
    policy: str,
    n_demos: int,
    noise: float,
    episodes: int,
    seed: int,
    run_dir: Path,
    overrides: dict[str, Any] | None = None,
    rti: bool = False,
) -> dict[str, Any]:
    """Imitation-only run through the real CLI config; returns the evaluation as a dict.

    ``rti``: for a ``diffusion`` policy also evaluate the same trained weights with the
    real-time-iteration warm start on the same seeds (``success_rti``), the RTI success cost."""
    from robot_rl.cli.common import compose
    from robot_rl.trainer import Trainer

    args = {
        "task": task,
        "policy": policy,
        "algo": "bc",
        "logger": "local",
        "logger.progress": "false",
        "demos.n_episodes": n_demos,
        "demos.expert_noise": noise,
        "eval.n_episodes": episodes,
        "eval.video_episodes": 0,
        "seed": seed,
        "device": "cpu",
        "run_dir": str(run_dir),
        "train.checkpoint_every": 100000,
        **(overrides or {}),
    }
    cfg = compose("train", args)
    t0 = time.perf_counter()
    trainer = Trainer(cfg)
    result = trainer.run().eval_result
    assert result is not None
    lo, hi = result.success_ci95
    extra: dict[str, Any] = {}
    if rti and policy == "diffusion":
        import dataclasses

        from robot_rl.trainer import make_env

        trained = trainer.policy.eval()
        trained.cfg = dataclasses.replace(trained.cfg, rti_warm_start=True)
        # the trainer's own evaluation: the same seed list as the full-DDIM row above
        warm = trainer._evaluate(trained, episodes, lambda: make_env(cfg))
        extra = {"success_rti": warm.success_rate, "ci95_rti": list(warm.success_ci95)}
    return {
        "task": task,
        "policy": policy,
        "overrides": {k: str(v) for k, v in (overrides or {}).items()},
        "demos": cfg.demos.n_episodes,  # what ran: a --set demos.* override replaces the preset's
        "noise": cfg.demos.expert_noise,
        "success": result.success_rate,
        "ci95": [lo, hi],
        "episodes": episodes,
        "wall_s": time.perf_counter() - t0,
        **extra,
    }


def measure_latency(n_calls: int = 200) -> list[dict[str, Any]]:
    import torch

    from robot_rl.core.types import ActionSpec, ObsSpec
    from robot_rl.policies.bc_chunk import BCChunkConfig, BCChunkPolicy
    from robot_rl.policies.diffusion import DiffusionConfig, DiffusionPolicy

    torch.set_num_threads(1)
    obs_spec, action_spec = ObsSpec(30), ActionSpec.normalized(4)  # Lift-sized state and action
    rows = []
    cases = [
        ("bc_chunk", BCChunkPolicy(BCChunkConfig(), obs_spec, action_spec)),
        (
            "bc_chunk transformer",
            BCChunkPolicy(BCChunkConfig(backbone="transformer"), obs_spec, action_spec),
        ),
        ("diffusion DDIM-10", DiffusionPolicy(DiffusionConfig(), obs_spec, action_spec)),
        (
            "diffusion DDIM-10 + RTI",
            DiffusionPolicy(DiffusionConfig(rti_warm_start=True), obs_spec, action_spec),
        ),
    ]
    for name, policy in cases:
        policy.eval()
        calls = [0]
        denoiser = getattr(getattr(policy, "ema", None), "denoiser", None)
        if denoiser is not None:  # count denoiser evaluations with a forward pre-hook
            denoiser.register_forward_pre_hook(lambda _m, _a, c=calls: c.__setitem__(0, c[0] + 1))
        obs = {"state": np.zeros(30, np.float32)}
        policy.reset()
        times, evals_per_chunk = [], []
        for i in range(n_calls * policy.cfg.execution_horizon + 10):
            before, replans = calls[0], not policy._queue
            t0 = time.perf_counter()
            policy.act(obs)
            if replans and i >= 10:  # skip warm-up; the first chunk of an RTI run is a full DDIM
                times.append((time.perf_counter() - t0) * 1e3)
                evals_per_chunk.append(calls[0] - before)
        evals = float(np.mean(evals_per_chunk))
        rows.append(
            {
                "policy": name,
                "ms_per_chunk_p50": statistics.median(times),
                "ms_per_chunk_p90": float(np.percentile(times, 90)),
                "denoiser_evals_per_chunk": evals,
            }
        )
    return rows


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``["policy.backbone=transformer", ...]`` -> ``{"policy.backbone": "transformer", ...}``."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    return overrides


def markdown(results: list[dict[str, Any]], latency: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    if results:
        lines += [
            "| task | policy | overrides | demos | expert noise | success | 95 % CI | wall s |",
            "|---|---|---|---:|---:|---:|---|---:|",
        ]
    for r in results:
        overrides = " ".join(f"{k}={v}" for k, v in r.get("overrides", {}).items()) or "—"
        lines.append(
            f"| {r['task']} | {r['policy']} | {overrides} | {r['demos']} | {r['noise']} | "
            f"{r['success']:.0%} | {r['ci95'][0]:.0%}–{r['ci95'][1]:.0%} | {r['wall_s']:.0f} |"
        )
        if "success_rti" in r:
            lo, hi = r["ci95_rti"]
            lines.append(
                f"| {r['task']} | {r['policy']} + RTI warm start (same weights and seeds) | {overrides} | "
                f"{r['demos']} | {r['noise']} | {r['success_rti']:.0%} | {lo:.0%}–{hi:.0%} | — |"
            )
    if latency:
        lines += [
            *([""] if lines else []),
            "| policy (1 CPU thread) | ms per new chunk, p50 | p90 | denoiser evals per chunk |",
            "|---|---:|---:|---:|",
        ]
        for r in latency:
            lines.append(
                f"| {r['policy']} | {r['ms_per_chunk_p50']:.2f} | {r['ms_per_chunk_p90']:.2f} | "
                f"{r['denoiser_evals_per_chunk']:.1f} |"
            )
    return "\n".join(lines)


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="robot-rl-bench policies", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="lift,peg_insert")
    parser.add_argument("--policies", default="bc_chunk,diffusion")
    parser.add_argument("--presets", default="expert,base_for_rl")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--latency-only", action="store_true")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every run, repeatable (e.g. policy.backbone=transformer)",
    )
    parser.add_argument(
        "--rti", action="store_true", help="also evaluate each diffusion policy with the RTI warm start"
    )
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    tasks, policies, presets = (s.split(",") for s in (args.tasks, args.policies, args.presets))
    try:
        overrides = parse_overrides(args.set)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for task in tasks:
        if task not in PRESETS:
            print(f"error: unknown task {task!r}; valid: {', '.join(PRESETS)}", file=sys.stderr)
            return 2
    results = []
    if not args.latency_only:
        with tempfile.TemporaryDirectory() as tmp:
            for task in tasks:
                for policy in policies:
                    for preset in presets:
                        n, noise = PRESETS[task][preset]
                        row = train_and_evaluate(
                            task,
                            policy,
                            n,
                            noise,
                            args.episodes,
                            args.seed,
                            Path(tmp) / f"{task}_{policy}_{preset}",
                            overrides,
                            rti=args.rti,
                        )
                        row["preset"] = preset
                        results.append(row)
                        print(json.dumps(row), flush=True)
    latency = [] if args.no_latency else measure_latency()
    print(markdown(results, latency))
    if args.out:
        Path(args.out).write_text(json.dumps({"success": results, "latency": latency}, indent=2))
    return 0
