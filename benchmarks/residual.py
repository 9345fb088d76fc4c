"""Residual-RL benchmark: success vs env steps of ``algo=residual`` from the ``base_for_rl`` base, with
stable-baselines3 SAC from scratch on the same sparse task and budget, and ablations.

``robot-rl-bench residual [--tasks lift] [--seeds 0,1,2] [--env-steps 50000] [--eval-every 5000]
[--arms residual,sb3_sac] [--ablations] [--set algo.utd=1 ...] [--threads N] [--out result.json]``

Every arm sees the same task config (sparse reward, termination on success), the same env-step
budget and is evaluated with deterministic actions every ``--eval-every`` env steps on the same
in-training evaluation seeds, and at the end on the held-out final-evaluation seeds ``0 ..
eval-episodes-1`` (disjoint from every training, demo and in-training seed: ``robot_rl.core.seeds``).
``residual`` runs the full pipeline (demos -> ``bc_chunk``
base -> residual RL); its evaluation at env step 0 is the base. ``sb3_sac`` is SB3's SAC with its
defaults (256x256, batch 256, learning_starts 100, UTD 1, automatic entropy) on the state vector.
Ablations (one seed): ``no_layernorm``, ``no_demos`` (``prior_fraction=0``), ``no_critic_warmup``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.benchmarks.policies import PRESETS, parse_overrides

ABLATIONS = {
    "no_layernorm": {"algo.layer_norm": "false"},
    "no_demos": {"algo.prior_fraction": "0.0"},
    "no_critic_warmup": {"algo.critic_warmup_updates": "0"},
}


def run_residual(
    task: str,
    seed: int,
    env_steps: int,
    eval_every: int,
    episodes: int,
    run_dir: Path,
    overrides: dict[str, str] | None = None,
) -> dict[str, Any]:
    from robot_rl.cli.common import compose
    from robot_rl.trainer import Trainer

    n, noise = PRESETS[task]["base_for_rl"]
    args = {
        "task": task,
        "algo": "residual",
        "logger": "local",
        "logger.progress": "false",
        "seed": seed,
        "demos.n_episodes": n,
        "demos.expert_noise": noise,
        "train.env_steps": env_steps,
        "train.eval_every": eval_every,
        "train.eval_episodes": episodes,
        "eval.n_episodes": episodes,
        "eval.video_episodes": 0,
        "run_dir": str(run_dir),
        **(overrides or {}),
    }
    cfg = compose("train", args)
    t0 = time.perf_counter()
    trainer = Trainer(cfg)
    summary = trainer.run()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["timing/updates_per_s"] for r in rows if "timing/updates_per_s" in r and r["step"] > 0]
    assert summary.eval_result is not None and summary.base_result is not None
    evals = json.loads((run_dir / "eval.json").read_text())
    warm = [r["train/q_mean_offline"] for r in rows if "train/q_mean_offline" in r]  # offline pre-training
    early = [r["train/q_mean"] for r in rows if "train/q_mean" in r and 0 < r["step"] <= 5000]
    alone = [v["success_rate"] for k, v in evals.items() if k.startswith("fine-tuned base alone")]
    return {
        "history": [{"env_step": h["env_step"], "success": h["success_rate"]} for h in trainer.history],
        "final": summary.eval_result.success_rate,
        "base": summary.base_result.success_rate,
        "finetuned_base": alone[0] if alone else None,  # algorithms that train the base (EXPO)
        "q_after_pretraining": warm[-1] if warm else None,  # mean Q at the end of offline pre-training
        "q_min_first_5k": min(early) if early else None,
        "wall_s": time.perf_counter() - t0,
        "updates_per_s": rates[-1] if rates else None,
    }


def run_sb3_sac(task: str, seed: int, env_steps: int, eval_every: int, episodes: int) -> dict[str, Any]:
    import gymnasium as gym
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    import robot_rl  # noqa: F401
    from robot_rl.core.seeds import evaluation_seeds, online_eval_seeds
    from robot_rl.envs import ENV_IDS
    from robot_rl.evaluation import evaluate

    def make() -> gym.Env:
        env = gym.make(ENV_IDS[task], terminate_on_success=True)
        return gym.wrappers.TransformObservation(env, lambda o: o["state"], env.observation_space["state"])

    class Policy:
        def __init__(self, model: Any):
            self.model = model

        def reset(self) -> None:
            pass

        def act(self, obs: np.ndarray) -> np.ndarray:
            return self.model.predict(obs, deterministic=True)[0]

    history: list[dict[str, float]] = []

    class EvalCallback(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every == 0:
                r = evaluate(Policy(self.model), make, online_eval_seeds(episodes))
                history.append({"env_step": self.num_timesteps, "success": r.success_rate})
            return True

    t0 = time.perf_counter()
    model = SAC("MlpPolicy", make(), seed=seed, device="cpu", verbose=0)
    history.append(
        {"env_step": 0, "success": evaluate(Policy(model), make, online_eval_seeds(episodes)).success_rate}
    )
    model.learn(total_timesteps=env_steps, callback=EvalCallback())
    final = evaluate(Policy(model), make, evaluation_seeds(episodes)).success_rate
    return {
        "history": history,
        "final": final,
        "base": None,
        "wall_s": time.perf_counter() - t0,
        "updates_per_s": None,
    }


def add_run_args(parser: argparse.ArgumentParser, set_help: str) -> None:
    """``--set KEY=VALUE`` (repeatable), ``--threads``, ``--out``: shared by the RL benchmarks."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=set_help)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", default="")


def apply_run_args(args: argparse.Namespace) -> dict[str, str] | None:
    """Set the torch threads and parse ``--set``; None (after a one-line error) on a bad override."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        return parse_overrides(args.set)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return None


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="robot-rl-bench residual", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="lift")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--env-steps", type=int, default=50_000)
    parser.add_argument("--eval-every", type=int, default=5000)
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--arms", default="residual,sb3_sac")
    parser.add_argument("--ablations", action="store_true", help="also run the ablations (first seed only)")
    add_run_args(parser, "config override for the residual arms (repeatable), e.g. --set algo.utd=1")
    args = parser.parse_args(argv)
    common = apply_run_args(args)
    if common is None:
        return 2
    seeds = [int(s) for s in args.seeds.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            if task not in PRESETS:
                print(f"error: unknown task {task!r}; valid: {', '.join(PRESETS)}", file=sys.stderr)
                return 2
            jobs: list[tuple[str, int, dict[str, str]]] = []
            for arm in filter(None, args.arms.split(",")):  # --arms "" with --ablations: ablations only
                jobs += [(arm, s, dict(common)) for s in seeds]
            if args.ablations:
                jobs += [(f"residual/{name}", seeds[0], {**common, **o}) for name, o in ABLATIONS.items()]
            for arm, seed, overrides in jobs:
                if arm == "sb3_sac":
                    row = run_sb3_sac(task, seed, args.env_steps, args.eval_every, args.eval_episodes)
                elif arm.startswith("residual"):
                    row = run_residual(
                        task,
                        seed,
                        args.env_steps,
                        args.eval_every,
                        args.eval_episodes,
                        Path(tmp) / f"{task}_{arm.replace('/', '_')}_{seed}",
                        overrides,
                    )
                else:
                    print(f"error: unknown arm {arm!r}; valid: residual, sb3_sac", file=sys.stderr)
                    return 2
                row.update({"task": task, "arm": arm, "seed": seed, "overrides": overrides})
                results.append(row)
                print(json.dumps(row), flush=True)
    print("\n| task | arm | seed | base | final | success by env step | wall s | updates/s |")
    print("|---|---|---:|---:|---:|---|---:|---:|")
    for r in results:
        curve = ", ".join(f"{h['env_step'] // 1000}k:{h['success']:.0%}" for h in r["history"])
        base = "—" if r["base"] is None else f"{r['base']:.0%}"
        ups = "—" if r["updates_per_s"] is None else f"{r['updates_per_s']:.0f}"
        print(
            f"| {r['task']} | {r['arm']} | {r['seed']} | {base} | {r['final']:.0%} | {curve} | "
            f"{r['wall_s']:.0f} | {ups} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0
