"""The ``Algorithm`` protocol every file in ``robot_rl/algos`` implements, and its config base."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from robot_rl.core.errors import ConfigError, TrainingDivergedError


@dataclass(frozen=True)
class AlgoConfig:
    name: str = ""
    lr: float = 3e-4
    batch_size: int = 256

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"algo.lr must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ConfigError(f"algo.batch_size must be >= 1, got {self.batch_size}")


@runtime_checkable
class Algorithm(Protocol):
    def act(self, obs: dict[str, np.ndarray], deterministic: bool = False) -> np.ndarray: ...

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def export_bundle(self, path: str | Path, **metadata: Any) -> Path: ...


def check_finite_loss(loss: torch.Tensor, step: int, batch: dict[str, torch.Tensor]) -> None:
    """Stop on a NaN/inf loss, naming the step and summarising the batch (never continue silently)."""
    if torch.isfinite(loss).all():
        return
    stats = ", ".join(
        f"{k}: min {v.min().item():.3g} max {v.max().item():.3g} nan {int(torch.isnan(v).sum())}"
        for k, v in batch.items()
        if v.is_floating_point() and v.numel()
    )
    raise TrainingDivergedError(f"non-finite loss {loss.item()} at update {step}; batch {stats}")
