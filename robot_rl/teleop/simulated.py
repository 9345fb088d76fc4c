"""``simulated``: a scripted "human" built on the task's expert — how HIL training is tested without a
person (HIL-SERL, Luo et al. 2024; docs/hil.md).

It takes over in bursts of ``burst_min``–``burst_max`` steps (uniform) when either
- the policy made no progress for ``no_progress_steps`` steps: the task's progress signal (its shaped
  reward, ``env.task_progress()``) has not beaten its best value of the episode by ``min_progress``; or
- a random intervention is due: each episode, with probability
  ``p(ep) = max(start_probability · (1 − ep / decay_episodes), 0)``, one burst starts at a uniformly
  drawn step of the first ``random_window`` steps.
During a burst it acts with the scripted expert (``env.expert_action(noise)``). Between bursts it
waits at least ``cooldown_steps`` steps, letting the policy act.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from robot_rl.core.validation import check
from robot_rl.teleop import TELEOP
from robot_rl.teleop.base import TeleopCommand, TeleopConfig, TeleopDevice, check_device_fields


@dataclass(frozen=True)
class SimulatedHumanConfig(TeleopConfig):
    name: str = "simulated"
    no_progress_steps: int = 10  # k
    min_progress: float = 1e-3  # progress must beat the episode's best by this much
    start_probability: float = 0.5  # p(0) of a random burst per episode
    decay_episodes: int = 100  # E_int: p(ep) reaches 0 here
    random_window: int = 40  # a random burst starts within the first steps of the episode
    burst_min: int = 10
    burst_max: int = 30
    cooldown_steps: int = 5
    noise: float = 0.0  # std of the expert's action noise
    seed: int = 0

    def __post_init__(self) -> None:
        check_device_fields(self, "no_progress_steps", "decay_episodes", "random_window", "burst_min")
        check(self.burst_max >= self.burst_min, "teleop.burst_max must be >= teleop.burst_min")
        check(0.0 <= self.start_probability <= 1.0, "teleop.start_probability must be in [0, 1]")
        check(self.cooldown_steps >= 0 and self.noise >= 0, "teleop.cooldown_steps and noise must be >= 0")


def random_burst_probability(episode: int, start: float, decay_episodes: int) -> float:
    """p(ep) = max(start · (1 − ep / E_int), 0)."""
    return max(start * (1.0 - episode / decay_episodes), 0.0)


@TELEOP.register("simulated", SimulatedHumanConfig)
class SimulatedHuman(TeleopDevice):
    name = "simulated"

    def __init__(self, cfg: SimulatedHumanConfig):
        self.cfg = cfg
        self.env: Any = None

    def reset(self, env: Any, episode: int) -> None:
        for attr in ("expert_action", "task_progress"):
            if not hasattr(env, attr):
                raise TypeError(f"the simulated human needs env.{attr}(); {type(env).__name__} has none")
        c = self.cfg
        self.env = env
        # one stream per episode: a resumed run draws the same bursts as an uninterrupted one
        self.rng = np.random.default_rng([c.seed, episode])
        self.t = 0
        self.burst_left = 0
        self.cooldown = 0
        self.best = -np.inf
        self.since_best = 0
        p = random_burst_probability(episode, c.start_probability, c.decay_episodes)
        self.random_at = int(self.rng.integers(c.random_window)) if self.rng.random() < p else -1

    def _start_burst(self) -> None:
        self.burst_left = int(self.rng.integers(self.cfg.burst_min, self.cfg.burst_max + 1))

    def command(self, obs: dict[str, np.ndarray], policy_action: np.ndarray) -> TeleopCommand:
        c = self.cfg
        progress = float(self.env.task_progress())
        if progress > self.best + c.min_progress:
            self.best, self.since_best = progress, 0
        else:
            self.since_best += 1
        due = self.since_best >= c.no_progress_steps or self.t == self.random_at
        if due and self.burst_left == 0 and self.cooldown == 0:
            self._start_burst()
        self.t += 1
        if self.burst_left > 0:
            self.burst_left -= 1
            if self.burst_left == 0:  # hand back; progress is judged afresh from here
                self.cooldown, self.since_best = c.cooldown_steps, 0
            return TeleopCommand(np.asarray(self.env.expert_action(noise=c.noise), np.float32), True)
        self.cooldown = max(self.cooldown - 1, 0)
        return TeleopCommand(np.zeros_like(policy_action, dtype=np.float32), False)
