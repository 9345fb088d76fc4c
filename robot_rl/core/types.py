"""Batch keys and small typed containers shared by every layer.

Keys follow LeRobot's naming where data is exchanged (``observation.state``, ``action``).
Shapes: ``B`` batch, ``To`` observation history, ``Ta`` action chunk, ``Da`` action dim.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

OBS = "observation"
OBS_STATE = "observation.state"
ACTION = "action"
REWARD = "reward"
NEXT_OBS = "next_observation"
TERMINATED = "terminated"
TRUNCATED = "truncated"
IS_DEMO = "is_demo"
INTERVENTION = "is_intervention"
BASE_ACTION = "base_action"

# observation dict keys produced by every environment (ARCHITECTURE §3.1)
STATE_KEY = "state"
PIXELS_PREFIX = "pixels/"


@dataclass(frozen=True)
class ObsSpec:
    """What a policy needs to see: the state vector size and the camera images (name -> H, W, C)."""

    state_dim: int
    cameras: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"state_dim": self.state_dim, "cameras": {k: list(v) for k, v in self.cameras.items()}}

    @classmethod
    def from_json(cls, data: dict) -> ObsSpec:
        return cls(int(data["state_dim"]), {k: tuple(v) for k, v in data.get("cameras", {}).items()})


@dataclass(frozen=True)
class ActionSpec:
    """Normalized action space ``[-1, 1]^Da`` plus the physical bounds it maps to (if known)."""

    dim: int
    low: tuple[float, ...]
    high: tuple[float, ...]

    @classmethod
    def normalized(cls, dim: int) -> ActionSpec:
        return cls(dim, (-1.0,) * dim, (1.0,) * dim)

    def to_json(self) -> dict:
        return {"dim": self.dim, "low": list(self.low), "high": list(self.high)}

    @classmethod
    def from_json(cls, data: dict) -> ActionSpec:
        return cls(int(data["dim"]), tuple(map(float, data["low"])), tuple(map(float, data["high"])))

    def clip(self, action: np.ndarray) -> np.ndarray:
        return np.clip(action, np.asarray(self.low), np.asarray(self.high))
