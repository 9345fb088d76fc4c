"""The ``Policy`` protocol every base policy implements (docs/policies.md) and its config base.

Shapes: ``B`` batch, ``To`` observation history, ``Ta`` action chunk, ``Da`` action dim,
``N`` candidate samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from robot_rl.config import check, check_positive


@dataclass(frozen=True)
class PolicyConfig:
    """Fields shared by every policy; subclasses add their own."""

    name: str = ""
    obs_horizon: int = 1  # To: observations the policy sees
    chunk_size: int = 1  # Ta: actions predicted per inference
    execution_horizon: int = 1  # actions executed from each chunk before re-planning
    action_headroom: float = 0.0  # widen the data's action range by this fraction (room for a residual)

    def __post_init__(self) -> None:
        check_positive("policy.obs_horizon", self.obs_horizon)
        check_positive("policy.chunk_size", self.chunk_size)
        check_positive("policy.execution_horizon", self.execution_horizon)
        check_positive("policy.action_headroom", self.action_headroom, allow_zero=True)
        check(
            self.execution_horizon <= self.chunk_size,
            f"policy.execution_horizon={self.execution_horizon} exceeds policy.chunk_size={self.chunk_size}",
        )


@runtime_checkable
class Policy(Protocol):
    """What sim evaluation, the RL algorithms and the ROS policy node call."""

    def reset(self) -> None:
        """Forget observation history and queued actions (call at every episode start)."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """One control step: a normalized action ``[Da]``; keeps its own chunk queue."""

    def sample(self, obs_batch: dict[str, torch.Tensor], n: int, use_ema: bool = True) -> torch.Tensor:
        """Stateless candidates ``[B, n, Ta, Da]`` for the observation batch ``[B, To, ...]``; ``use_ema``
        picks the acting (EMA) or the current weights of a policy that keeps both."""

    def bc_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The policy's native imitation loss on a batch of (observation history, action chunk)."""

    def after_optimizer_step(self) -> None:
        """Called by the trainer after each optimizer step on the policy (EMA updates etc.)."""

    def fit_normalizer(self, states: np.ndarray, actions: np.ndarray | None = None) -> None:
        """Normalization statistics from the training data, ``states [N, Ds]`` and ``actions [N, Da]``
        (once, before training; saved in the bundle)."""

    def to(self, device: Any) -> Any: ...
