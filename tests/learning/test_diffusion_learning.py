"""Slow tier (``pytest -m learning tests/learning/test_diffusion_learning.py -s``): the diffusion
policy learns PointReach from scripted demos, and the act() latency / RTI report."""

import time

import numpy as np
import pytest
import torch

import robot_rl.policies.diffusion  # noqa: F401  (registers "diffusion" for the hydra schema)
from robot_rl.core.types import ActionSpec, ObsSpec
from robot_rl.policies.diffusion import DiffusionConfig, DiffusionPolicy
from tests.conftest import make_train_config

pytestmark = pytest.mark.learning


def test_diffusion_learns_point_reach(tmp_path):
    """~50 s on one CPU core: 600 imitation steps; measured success 0.80 on 20 episodes."""
    from robot_rl.trainer import Trainer

    cfg = make_train_config(
        tmp_path / "run",
        policy="diffusion",
        algo="bc",
        **{
            "base.steps": 600,
            "base.batch_size": 128,
            "demos.n_episodes": 30,
            "eval.n_episodes": 20,
            "train.log_every": 200,
            "train.checkpoint_every": 100_000,
        },
    )
    summary = Trainer(cfg).run()
    success = summary.eval_result.success_rate
    print(f"diffusion PointReach success after 600 steps: {success:.2f}")
    assert success >= 0.5


def _act_latency(**overrides) -> tuple[float, float]:
    """Median ms of an act() that samples a new chunk, and denoiser calls per chunk (steady state)."""
    cfg = DiffusionConfig(**overrides)
    policy = DiffusionPolicy(cfg, ObsSpec(10), ActionSpec.normalized(2)).eval()
    calls = [0]
    policy.ema.denoiser.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    rng = np.random.default_rng(0)
    for _ in range(20):
        policy.act({"state": rng.normal(size=10).astype(np.float32)})
    policy.reset()
    policy.act({"state": rng.normal(size=10).astype(np.float32)})
    start_calls, plan = calls[0], []
    for _ in range(400):
        obs = {"state": rng.normal(size=10).astype(np.float32)}
        t = time.perf_counter()
        policy.act(obs)
        dt = time.perf_counter() - t
        if len(policy._queue) == cfg.execution_horizon - 1:  # this call sampled a chunk
            plan.append(dt)
    return float(np.median(plan) * 1e3), (calls[0] - start_calls) / len(plan)


def test_act_latency_and_rti_report():
    torch.set_num_threads(1)
    results = {}
    for name, overrides in {
        "mlp_resnet DDIM-10": {},
        "mlp_resnet DDIM-10 + RTI k=3": {"rti_warm_start": True},
        "unet1d DDIM-10": {"denoiser": "unet1d"},
        "unet1d DDIM-10 + RTI k=3": {"denoiser": "unet1d", "rti_warm_start": True},
    }.items():
        results[name] = _act_latency(**overrides)
        print(f"{name}: {results[name][0]:.2f} ms per chunk, {results[name][1]:.1f} denoiser calls")
    full, warm = results["mlp_resnet DDIM-10"][1], results["mlp_resnet DDIM-10 + RTI k=3"][1]
    assert full / warm >= 3.0
