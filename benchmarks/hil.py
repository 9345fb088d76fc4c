"""Human-in-the-loop benchmark with the simulated human: does putting interventions into both buffers
(HIL-SERL) learn faster than demos alone, plain SAC, or interventions in the online buffer only?

``robot-rl-bench hil [--tasks lift] [--seeds 0] [--env-steps 30000] [--eval-every 2500]
[--arms hil,demos_only,sac,online_only] [--window 20] [--set KEY=VALUE ...] [--threads N] [--out F]``

Every arm is ``experiment=hil_sim`` (20 zero-noise scripted demos, SAC with HIL-SERL's settings: 2
LayerNorm critics, γ 0.97, temperature 1e-2, no entropy backup, 2 critic updates per env step, batch
256) on the same seeds and budget, evaluated without any teleop every ``--eval-every`` env steps:

1. ``hil``: the simulated human intervenes; its steps go into the online **and** the prior buffer,
   sampled 50/50 (full HIL-SERL);
2. ``demos_only``: no interventions; demos 50/50 (RLPD-style);
3. ``sac``: no interventions, no demos in the batches (``prior_fraction=0``; the demos still set the
   state normalizer's statistics);
4. ``online_only``: interventions into the online buffer only (``teleop.into_prior=false``).

Reported per run: success by env step, the first env step with success ≥ 80 % (``steps_to_80``), and
for the arms with interventions the moving average (``--window`` episodes) of the per-episode
intervention rate (intervention steps / steps) at each evaluation, its last value and whether it fell
below 10 %.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.benchmarks.policies import PRESETS
from robot_rl.benchmarks.residual import add_run_args, apply_run_args, run_residual

ARMS: dict[str, dict[str, str]] = {
    "hil": {"experiment": "hil_sim", "algo": "rlpd", "teleop": "simulated"},
    "demos_only": {"experiment": "hil_sim", "algo": "rlpd", "~teleop": ""},
    "sac": {"experiment": "hil_sim", "algo": "rlpd", "~teleop": "", "algo.prior_fraction": "0.0"},
    "online_only": {
        "experiment": "hil_sim",
        "algo": "rlpd",
        "teleop": "simulated",
        "teleop.into_prior": "false",
    },
}
DEMOS = {"demos.n_episodes": "20", "demos.expert_noise": "0.0", "base.steps": "0"}  # win over the presets


def moving_average(values: list[float], window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` values (fewer at the start)."""
    v = np.asarray(values, dtype=np.float64)
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(1, len(v) + 1)
    lo = np.maximum(i - window, 0)
    return (c[i] - c[lo]) / (i - lo)


def intervention_summary(metrics_path: Path, eval_steps: list[int], window: int) -> dict[str, Any]:
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines()]
    eps = [(r["step"], r["train/intervention_rate"]) for r in rows if "train/intervention_rate" in r]
    if not eps:
        return {}
    steps = np.array([s for s, _ in eps])
    avg = moving_average([rate for _, rate in eps], window)
    at_evals = [float(avg[steps <= s][-1]) if (steps <= s).any() else None for s in eval_steps]
    return {
        "intervention_rate_ma": at_evals,
        "intervention_rate_final": float(avg[-1]),
        "intervention_rate_first": float(avg[min(window, len(avg)) - 1]),
        "below_10pct": bool(avg[-1] < 0.10),
        "episodes": len(eps),
    }


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="robot-rl-bench hil", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="lift")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--env-steps", type=int, default=30_000)
    parser.add_argument("--eval-every", type=int, default=2500)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--window", type=int, default=20, help="episodes in the intervention-rate average")
    add_run_args(parser, "config override for every arm (repeatable), e.g. --set algo.utd=1")
    args = parser.parse_args(argv)
    common = apply_run_args(args)
    if common is None:
        return 2
    arms = [a for a in args.arms.split(",") if a]
    for name in [*arms, *args.tasks.split(",")]:
        if name not in ARMS and name not in PRESETS:
            print(f"error: unknown arm or task {name!r}; arms: {', '.join(ARMS)}", file=sys.stderr)
            return 2
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            for arm in arms:
                for seed in (int(s) for s in args.seeds.split(",")):
                    run_dir = Path(tmp) / f"{task}_{arm}_{seed}"
                    overrides = {**ARMS[arm], **DEMOS, **common}
                    row = run_residual(
                        task, seed, args.env_steps, args.eval_every, args.eval_episodes, run_dir, overrides
                    )
                    evals = [h["env_step"] for h in row["history"]]
                    row.update(intervention_summary(run_dir / "metrics.jsonl", evals, args.window))
                    hit = [h["env_step"] for h in row["history"] if h["success"] >= 0.8]
                    row.update(
                        {"task": task, "arm": arm, "seed": seed, "steps_to_80": hit[0] if hit else None}
                    )
                    row.pop("base", None)  # no imitation base in these arms
                    results.append(row)
                    print(json.dumps(row), flush=True)
    columns = (
        "task | arm | seed | final | steps to 80 % | success by env step | intervention rate (MA) | wall s"
    )
    print(f"\n| {columns} |")
    print("|---|---|---:|---:|---:|---|---|---:|")
    for r in results:
        curve = ", ".join(f"{h['env_step'] / 1000:g}k:{h['success']:.0%}" for h in r["history"])
        ma = r.get("intervention_rate_ma")
        rate = "—" if not ma else " → ".join("—" if v is None else f"{v:.2f}" for v in ma)
        hit = "not reached" if r["steps_to_80"] is None else str(r["steps_to_80"])
        print(
            f"| {r['task']} | {r['arm']} | {r['seed']} | {r['final']:.0%} | {hit} | {curve} | {rate} | "
            f"{r['wall_s']:.0f} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0
