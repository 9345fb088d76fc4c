"""``spacemouse``: a 3Dconnexion SpaceMouse, HIL-SERL's device. Pushing the cap moves the tcp (x
forward, y left, z up; rotations are ignored by the position-only tasks); the left button closes and
the right one opens the gripper. It takes over whenever the cap is deflected beyond ``takeover_norm``
(HIL-SERL: 1e-3) or a button is down, so a light touch corrects the policy and letting go hands back.
Read through a :class:`MouseSource`; the default one uses ``pyspacemouse`` (hidapi; extra ``teleop``).
Episode labels (success, failure, re-record) come from the keyboard or the ROS teleop node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from robot_rl.core.optional import require
from robot_rl.teleop import TELEOP
from robot_rl.teleop.base import (
    GripperLatch,
    TeleopCommand,
    TeleopConfig,
    TeleopDevice,
    check_device_fields,
    deadzone,
    ee_action,
)


@dataclass(frozen=True)
class SpaceMouseConfig(TeleopConfig):
    name: str = "spacemouse"
    speed: float = 1.0  # normalized action at full deflection
    deadzone: float = 0.05
    takeover_norm: float = 1e-3  # deflection norm (6 axes, raw) that counts as intervening

    def __post_init__(self) -> None:
        check_device_fields(self, "speed", "takeover_norm")


class MouseSource(Protocol):
    def read(self) -> tuple[np.ndarray, tuple[bool, bool]]:
        """Axes ``(x, y, z, roll, pitch, yaw)`` in [-1, 1] and the (left, right) buttons."""


class PySpaceMouse:
    def __init__(self) -> None:
        require("pyspacemouse", "the spacemouse teleop device")
        import pyspacemouse

        if not pyspacemouse.open():
            raise RuntimeError("no SpaceMouse found (pyspacemouse.open() failed; check hidraw permissions)")
        self.lib = pyspacemouse

    def read(self) -> tuple[np.ndarray, tuple[bool, bool]]:
        s = self.lib.read()
        buttons = tuple(bool(b) for b in [*s.buttons, 0, 0][:2])
        return np.array([s.y, -s.x, s.z, s.roll, s.pitch, s.yaw], dtype=np.float64), buttons  # type: ignore[return-value]

    def close(self) -> None:
        self.lib.close()


@TELEOP.register("spacemouse", SpaceMouseConfig)
class SpaceMouse(TeleopDevice):
    name = "spacemouse"

    def __init__(self, cfg: SpaceMouseConfig, source: MouseSource | None = None):
        self.cfg = cfg
        self.source = source if source is not None else PySpaceMouse()
        self.gripper = GripperLatch()

    def command(self, obs: dict[str, np.ndarray], policy_action: np.ndarray) -> TeleopCommand:
        axes, (left, right) = self.source.read()
        axes = np.nan_to_num(np.asarray(axes, dtype=np.float64))
        grip = self.gripper.update(left, right)
        takeover = bool(np.linalg.norm(axes) > self.cfg.takeover_norm or left or right)
        move = deadzone(axes[:3], self.cfg.deadzone)
        return TeleopCommand(ee_action(move, grip, self.cfg.speed), takeover)

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()
