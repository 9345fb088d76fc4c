"""CUDA check of the learning code (run on a GPU machine): residual/SAC updates, acting and a
diffusion policy's sampling on the GPU, with the throughput printed. Not part of the test suite;
used when a GPU is available (see docs/benchmarks.md)."""

from __future__ import annotations

import time

import numpy as np
import torch

from robot_rl.algos.residual import Residual, ResidualConfig
from robot_rl.algos.sac import SAC, SACConfig
from robot_rl.core.replay import ReplayBuffer
from robot_rl.core.types import ActionSpec, ObsSpec
from robot_rl.policies.bc_chunk import BCChunkConfig, BCChunkPolicy
from robot_rl.policies.diffusion import DiffusionConfig, DiffusionPolicy
from robot_rl.trainer import resolve_device


def main() -> None:
    device = resolve_device("auto")
    print("device:", device, torch.cuda.get_device_name(0) if device.type == "cuda" else "")
    ds, da = 30, 4
    rng = np.random.default_rng(0)
    keys = {"state": (ds,), "base_action": (da,)}
    buf = ReplayBuffer(10_000, keys, action_dim=da, n_step=3)
    for i in range(10_000):
        o = {k: rng.normal(size=s).astype(np.float32) for k, s in keys.items()}
        n = {k: rng.normal(size=s).astype(np.float32) for k, s in keys.items()}
        buf.add(o, rng.uniform(-1, 1, da), float(rng.random() < 0.1), n, False, (i + 1) % 100 == 0)
    base = BCChunkPolicy(BCChunkConfig(), ObsSpec(ds), ActionSpec.normalized(da)).to(device)
    for name, algo in (
        ("residual", Residual(ResidualConfig(), ObsSpec(ds), ActionSpec.normalized(da), base, device)),
        ("sac", SAC(SACConfig(), ObsSpec(ds), ActionSpec.normalized(da), None, device)),
    ):
        algo.fit_normalizer(rng.normal(size=(100, ds)).astype(np.float32))
        batches = [buf.sample(256, rng, device) for _ in range(50)]
        for b in batches[:5]:
            algo.update(b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(500):
            metrics = algo.update(batches[i % 50], update_actor=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rate = 500 / (time.perf_counter() - t0)
        obs = {k: rng.normal(size=s).astype(np.float32) for k, s in keys.items()}
        action = algo.act(obs, deterministic=False)
        assert action.shape == (da,) and np.all(np.isfinite(action))
        assert all(np.isfinite(v) for k, v in metrics.items() if k.startswith("loss/"))
        print(f"{name}: {rate:.0f} updates/s on {device} (batch 256, 256x256), act ok")
    policy = DiffusionPolicy(DiffusionConfig(), ObsSpec(ds), ActionSpec.normalized(da)).to(device)
    samples = policy.sample({"obs_state": torch.zeros(4, policy.cfg.obs_horizon, ds, device=device)}, 16)
    assert samples.shape == (4, 16, policy.cfg.chunk_size, da) and samples.device.type == device.type
    t0 = time.perf_counter()
    policy.reset()
    for _ in range(40):
        policy.act({"state": np.zeros(ds, np.float32)})
    print(
        f"diffusion: sample [4,16,8,{da}] ok; act {40 / (time.perf_counter() - t0):.0f} steps/s on {device}"
    )


if __name__ == "__main__":
    main()
