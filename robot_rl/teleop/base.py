"""What every teleop device produces, and the pure mappings from raw input to it.

Action convention (the built-in tasks' ``ee_delta`` control): ``a[:3]`` is the tcp displacement per
control step in units of the task's step size (``+x`` forward, ``+y`` left, ``+z`` up, world frame),
``a[3]`` the gripper command (−1 open, +1 closed); every entry in [−1, 1].
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_rl.core.validation import check, check_positive

SUCCESS, FAILURE, RERECORD, END = "success", "failure", "rerecord", "end"
EVENTS = (SUCCESS, FAILURE, RERECORD, END)


@dataclass(frozen=True)
class TeleopConfig:
    """Fields every device shares. ``into_prior``: intervention steps also go into the prior (demo)
    buffer, as in HIL-SERL (``false``: the online buffer only, the ablation)."""

    name: str = ""
    into_prior: bool = True


@dataclass(frozen=True)
class TeleopCommand:
    """One device reading. ``action`` is used only while ``takeover`` is true."""

    action: np.ndarray  # (Da,) float32 in [-1, 1], finite
    takeover: bool = False
    events: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        unknown = set(self.events) - set(EVENTS)
        if unknown:
            raise ValueError(f"unknown teleop events {sorted(unknown)}; valid: {', '.join(EVENTS)}")


class TeleopDevice(abc.ABC):
    """Base class: ``reset`` at every episode start, ``command`` once per control step."""

    name = ""

    def reset(self, env: Any, episode: int) -> None:  # noqa: B027 (optional hook: most devices keep no state)
        """``env``: the unwrapped task (the simulated human reads it); ``episode``: the training episode."""

    @abc.abstractmethod
    def command(self, obs: dict[str, np.ndarray], policy_action: np.ndarray) -> TeleopCommand:
        """The device's reading for this step (``policy_action``: what the agent proposes)."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release the input device."""


def deadzone(x: np.ndarray, threshold: float) -> np.ndarray:
    """Zero inside ``|x| < threshold``, rescaled to reach ±1 at ±1 outside (no jump at the edge)."""
    x = np.asarray(x, dtype=np.float64)
    mag = np.clip((np.abs(x) - threshold) / (1.0 - threshold), 0.0, 1.0)
    return np.sign(x) * mag


def ee_action(translation: np.ndarray, gripper: float, gain: float = 1.0) -> np.ndarray:
    """(3,) translation in device units + gripper command -> the normalized (4,) action, clipped;
    non-finite input becomes 0 (no motion) and an open gripper."""
    t = np.nan_to_num(np.asarray(translation, dtype=np.float64) * gain, nan=0.0, posinf=1.0, neginf=-1.0)
    g = float(gripper) if np.isfinite(gripper) else -1.0
    return np.clip(np.array([*t, g]), -1.0, 1.0).astype(np.float32)


@dataclass
class GripperLatch:
    """Gripper state driven by close/open buttons (a press sets it; it stays until the other one)."""

    closed: bool = False

    def update(self, close: bool, open_: bool) -> float:
        if close and not open_:
            self.closed = True
        elif open_ and not close:
            self.closed = False
        return 1.0 if self.closed else -1.0


def check_device_fields(cfg: Any, *positive: str) -> None:
    for name in positive:
        check_positive(f"teleop.{name}", getattr(cfg, name))
    if hasattr(cfg, "deadzone"):
        check(0.0 <= cfg.deadzone < 1.0, f"teleop.deadzone must be in [0, 1), got {cfg.deadzone}")
