"""Policy evaluation on a fixed seed list: success rate with a Wilson interval, return, length, video."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95 % for ``z=1.96``)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class EvalResult:
    success_rate: float
    success_ci95: tuple[float, float]
    mean_return: float
    mean_length: float
    n_episodes: int
    seeds: list[int]
    successes: list[bool] = field(default_factory=list)

    def metrics(self, prefix: str = "eval/") -> dict[str, float]:
        return {
            f"{prefix}success_rate": self.success_rate,
            f"{prefix}return": self.mean_return,
            f"{prefix}episode_length": self.mean_length,
        }

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(
    policy: Any,
    make_env: Callable[[], gym.Env],
    seeds: list[int],
    video_path: str | Path | None = None,
    video_episodes: int = 1,
    progress: bool = False,
) -> EvalResult:
    """Roll ``policy`` (``reset()`` / ``act(obs)``) once per seed; success = ``is_success`` at any step.

    Frames of the first ``video_episodes`` episodes are written to ``video_path`` (MP4) when the
    environment renders.
    """
    from tqdm.auto import tqdm

    env = make_env()
    successes, returns, lengths, frames = [], [], [], []
    try:
        for i, seed in enumerate(tqdm(seeds, desc="eval", disable=None if progress else True, leave=False)):
            obs, info = env.reset(seed=seed)
            policy.reset()
            record = video_path is not None and i < video_episodes
            total, steps, success = 0.0, 0, bool(info.get("is_success", False))
            done = False
            while not done:
                if record:
                    frame = env.render()
                    if frame is not None:
                        frames.append(frame)
                obs, reward, terminated, truncated, info = env.step(policy.act(obs))
                total += float(reward)
                steps += 1
                success = success or bool(info.get("is_success", False))
                done = terminated or truncated
            successes.append(success)
            returns.append(total)
            lengths.append(steps)
    finally:
        env.close()
    if video_path is not None and frames:
        write_video(video_path, frames, fps=int(env.metadata.get("render_fps", 20)))
    n_success = int(sum(successes))
    return EvalResult(
        success_rate=n_success / len(seeds),
        success_ci95=wilson_interval(n_success, len(seeds)),
        mean_return=float(np.mean(returns)),
        mean_length=float(np.mean(lengths)),
        n_episodes=len(seeds),
        seeds=list(seeds),
        successes=successes,
    )


def write_video(path: str | Path, frames: list[np.ndarray], fps: int = 20) -> None:
    import imageio.v2 as imageio

    with imageio.get_writer(str(path), fps=fps, codec="libx264", macro_block_size=1) as writer:
        for frame in frames:
            writer.append_data(frame)
