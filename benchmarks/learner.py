"""Learner-speed benchmark: gradient updates per second of our ``sac``/``rlpd``/``residual`` learners
vs stable-baselines3 SAC at equal network size (default 256×256) and batch size (default 256), in one
process.

``robot-rl-bench learner [--updates 300] [--threads 2] [--width 256] [--batch 256] [--out result.json]``

Each learner trains on the same kind of data: a replay buffer of random transitions with the
dimensions of ``robot_rl/Lift-v0`` (state and action sizes read from the env). One "update" is what
each library does per gradient step: critic + actor + temperature (SAC) or critic + actor (residual;
the actor on every update here). SB3 is timed through ``SAC.train(gradient_steps=N, batch_size=B)``
after filling its replay buffer; ours through ``algo.update`` on batches drawn from our replay.
Median of 3 repeats after a warm-up; torch threads fixed for both.

``--width 16 --batch 16`` measures the fixed cost of one update (Python, dispatch, autograd and
optimizer bookkeeping, with almost no arithmetic): the full-size time minus this floor is what the
arithmetic itself costs, which bounds how far any per-op overhead reduction can go.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _dims() -> tuple[int, int]:
    import gymnasium as gym

    import robot_rl  # noqa: F401  (registers the ids)

    env = gym.make("robot_rl/Lift-v0")
    dims = env.observation_space["state"].shape[0], env.action_space.shape[0]
    env.close()
    return dims


def _ours(name: str, ds: int, da: int, n: int, repeats: int, width: int, batch: int) -> list[float]:
    from robot_rl.algos import ALGOS
    from robot_rl.core.replay import ReplayBuffer
    from robot_rl.core.types import ActionSpec, ObsSpec

    cfg_cls = ALGOS.config_cls(name)
    cfg = cfg_cls(hidden_dims=[width, width], batch_size=batch)
    rng = np.random.default_rng(0)
    keys = {"state": (ds,), **({"base_action": (da,)} if name == "residual" else {})}
    buf = ReplayBuffer(20_000, keys, action_dim=da, n_step=getattr(cfg, "n_step", 1))
    for i in range(20_000):
        obs = {k: rng.normal(size=s).astype(np.float32) for k, s in keys.items()}
        nxt = {k: rng.normal(size=s).astype(np.float32) for k, s in keys.items()}
        buf.add(obs, rng.uniform(-1, 1, da), float(rng.random() < 0.1), nxt, False, (i + 1) % 100 == 0)
    base = None
    if name == "residual":
        from robot_rl.policies.bc_chunk import BCChunkConfig, BCChunkPolicy

        base = BCChunkPolicy(BCChunkConfig(), ObsSpec(ds), ActionSpec.normalized(da))
    algo = ALGOS.get(name)(cfg, ObsSpec(ds), ActionSpec.normalized(da), base_policy=base, device="cpu")
    algo.fit_normalizer(np.zeros((2, ds), np.float32) + np.arange(2)[:, None])
    rates = []
    for r in range(repeats + 1):
        batches = [buf.sample(batch, rng) for _ in range(n)]
        t0 = time.perf_counter()
        for b in batches:
            algo.update(b, update_actor=True)
        if r:  # the first repeat is warm-up
            rates.append(n / (time.perf_counter() - t0))
    return rates


def _sb3(ds: int, da: int, n: int, repeats: int, width: int, batch: int) -> list[float]:
    import gymnasium as gym
    from stable_baselines3 import SAC

    class Dummy(gym.Env):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (ds,), np.float32)
        action_space = gym.spaces.Box(-1, 1, (da,), np.float32)

        def reset(self, *, seed=None, options=None):
            return np.zeros(ds, np.float32), {}

        def step(self, action):
            return np.zeros(ds, np.float32), 0.0, False, False, {}

    model = SAC(
        "MlpPolicy",
        Dummy(),
        batch_size=batch,
        buffer_size=20_000,
        learning_starts=0,
        policy_kwargs={"net_arch": [width, width]},
        device="cpu",
        seed=0,
    )
    rng = np.random.default_rng(0)
    for _ in range(20_000):
        model.replay_buffer.add(
            rng.normal(size=(1, ds)),
            rng.normal(size=(1, ds)),
            rng.uniform(-1, 1, (1, da)),
            np.array([float(rng.random() < 0.1)]),
            np.array([False]),
            [{}],
        )
    model._setup_learn(total_timesteps=1, callback=None)
    rates = []
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        model.train(gradient_steps=n, batch_size=batch)
        if r:
            rates.append(n / (time.perf_counter() - t0))
    return rates


def run(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(prog="robot-rl-bench learner", description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--learners", default="sb3_sac,sac,rlpd,residual")
    parser.add_argument("--width", type=int, default=256, help="hidden units of both layers, every learner")
    parser.add_argument("--batch", type=int, default=256, help="batch size, every learner")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    if args.width < 1 or args.batch < 1:
        print(f"error: --width and --batch must be positive, not {args.width}, {args.batch}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    ds, da = _dims()
    rows: list[dict[str, Any]] = []
    for name in args.learners.split(","):
        if name == "sb3_sac":
            rates = _sb3(ds, da, args.updates, args.repeats, args.width, args.batch)
            desc = "stable-baselines3 SAC (2 critics)"
        elif name in ("sac", "rlpd", "residual"):
            rates = _ours(name, ds, da, args.updates, args.repeats, args.width, args.batch)
            desc = {
                "sac": "ours sac (2 critics)",
                "rlpd": "ours rlpd (10 LayerNorm critics)",
                "residual": "ours residual (5 LayerNorm critics)",
            }[name]
        else:
            print(f"error: unknown learner {name!r}; valid: sb3_sac, sac, rlpd, residual", file=sys.stderr)
            return 2
        rows.append(
            {
                "learner": name,
                "description": desc,
                "updates_per_s": statistics.median(rates),
                "all": rates,
                "threads": args.threads,
                "width": args.width,
                "batch": args.batch,
                "state_dim": ds,
                "action_dim": da,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    ref = next((r["updates_per_s"] for r in rows if r["learner"] == "sb3_sac"), None)
    print(f"\n{args.width}x{args.width} networks, batch {args.batch}, {args.threads} torch threads")
    print("| learner | updates/s (median of 3) | ms per update | vs SB3 SAC |\n|---|---:|---:|---:|")
    for r in rows:
        ratio = f"{r['updates_per_s'] / ref:.2f}" if ref else "n/a"
        print(f"| {r['description']} | {r['updates_per_s']:.1f} | {1e3 / r['updates_per_s']:.2f} | {ratio} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0
