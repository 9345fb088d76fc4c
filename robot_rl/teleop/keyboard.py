"""``keyboard``: arrow keys move the tcp in the table plane, shift / ctrl up / down, ``c`` / ``o``
close / open the gripper; any of these takes over for that step, and ``space`` toggles a standing
takeover (hold the arm still while in control). ``s`` success, ``f`` failure, ``r`` re-record, ``q`` end
(LeRobot's keyboard layout). Keys are read through a :class:`KeySource`; the default one listens with
``pynput`` (extra ``teleop``; needs a desktop session). HIL-SERL's advice: a SpaceMouse is far more
precise than a keyboard.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from robot_rl.core.optional import require
from robot_rl.teleop import TELEOP
from robot_rl.teleop.base import (
    END,
    FAILURE,
    RERECORD,
    SUCCESS,
    GripperLatch,
    TeleopCommand,
    TeleopConfig,
    TeleopDevice,
    check_device_fields,
    ee_action,
)

MOTION_KEYS = {  # key -> (axis, sign): x forward, y left, z up
    "up": (0, 1.0),
    "down": (0, -1.0),
    "left": (1, 1.0),
    "right": (1, -1.0),
    "shift": (2, 1.0),
    "ctrl": (2, -1.0),
}
EVENT_KEYS = {"s": SUCCESS, "f": FAILURE, "r": RERECORD, "q": END}


@dataclass(frozen=True)
class KeyboardConfig(TeleopConfig):
    name: str = "keyboard"
    speed: float = 0.5  # normalized action per held key (1 = the task's full step)

    def __post_init__(self) -> None:
        check_device_fields(self, "speed")


class KeySource(Protocol):
    def held(self) -> set[str]:
        """Keys down now."""

    def presses(self) -> list[str]:
        """Keys pressed since the last call, in order."""


class PynputKeys:
    """Key state from a pynput listener (background thread)."""

    def __init__(self) -> None:
        require("pynput", "the keyboard teleop device")
        from pynput import keyboard

        self._held: set[str] = set()
        self._presses: list[str] = []
        self._lock = threading.Lock()

        def name(key: Any) -> str:
            char = getattr(key, "char", None)
            return (
                char.lower() if char else str(key).removeprefix("Key.").removesuffix("_l").removesuffix("_r")
            )

        def on_press(key: Any) -> None:
            with self._lock:
                self._held.add(name(key))
                self._presses.append(name(key))

        def on_release(key: Any) -> None:
            with self._lock:
                self._held.discard(name(key))

        self._listener = keyboard.Listener(on_press=on_press, on_release=on_release)
        self._listener.start()

    def held(self) -> set[str]:
        with self._lock:
            return set(self._held)

    def presses(self) -> list[str]:
        with self._lock:
            out, self._presses = self._presses, []
        return out

    def stop(self) -> None:
        self._listener.stop()


@TELEOP.register("keyboard", KeyboardConfig)
class Keyboard(TeleopDevice):
    name = "keyboard"

    def __init__(self, cfg: KeyboardConfig, source: KeySource | None = None):
        self.cfg = cfg
        self.source = source if source is not None else PynputKeys()
        self.gripper = GripperLatch()
        self.standing = False

    def command(self, obs: dict[str, np.ndarray], policy_action: np.ndarray) -> TeleopCommand:
        held, presses = self.source.held(), self.source.presses()
        events = frozenset(EVENT_KEYS[k] for k in presses if k in EVENT_KEYS)
        if presses.count("space") % 2:
            self.standing = not self.standing
        move = np.zeros(3)
        for key, (axis, sign) in MOTION_KEYS.items():
            if key in held:
                move[axis] += sign
        grip_keys = {"c", "o"} & (held | set(presses))
        grip = self.gripper.update("c" in grip_keys, "o" in grip_keys)
        takeover = self.standing or bool(move.any()) or bool(grip_keys)
        return TeleopCommand(ee_action(move, grip, self.cfg.speed), takeover, events)

    def close(self) -> None:
        stop = getattr(self.source, "stop", None)
        if stop is not None:
            stop()
