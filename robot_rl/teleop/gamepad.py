"""``gamepad``: left stick moves the tcp in the table plane (up = forward, left = left), right stick up /
down moves it up / down; LT closes and RT opens the gripper; RB toggles the takeover; Y success,
A failure, X re-record, B end (gym-hil's layout). Read through a :class:`PadSource`; the default one
polls the first joystick with ``pygame`` (extra ``teleop``). Stick values below ``deadzone`` are zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

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
    deadzone,
    ee_action,
)

EVENT_BUTTONS = {"y": SUCCESS, "a": FAILURE, "x": RERECORD, "b": END}


@dataclass(frozen=True)
class GamepadConfig(TeleopConfig):
    name: str = "gamepad"
    speed: float = 1.0  # normalized action at full stick deflection
    deadzone: float = 0.1
    trigger_threshold: float = 0.5  # LT/RT count as pressed beyond this (0..1)

    def __post_init__(self) -> None:
        check_device_fields(self, "speed", "trigger_threshold")


class PadSource(Protocol):
    def read(self) -> tuple[dict[str, float], dict[str, bool]]:
        """Axes ``lx, ly, rx, ry`` in [-1, 1] (stick up / right positive) and ``lt, rt`` in [0, 1];
        buttons ``a, b, x, y, rb`` (True while held)."""


class PygamePad:
    """The first joystick through pygame (Xbox-style layout)."""

    AXES: ClassVar[dict[str, int]] = {"lx": 0, "ly": 1, "lt": 2, "rx": 3, "ry": 4, "rt": 5}
    BUTTONS: ClassVar[dict[str, int]] = {"a": 0, "b": 1, "x": 2, "y": 3, "rb": 5}

    def __init__(self) -> None:
        require("pygame", "the gamepad teleop device")
        import pygame

        pygame.init()
        pygame.joystick.init()
        if pygame.joystick.get_count() == 0:
            raise RuntimeError("no gamepad found (pygame sees no joystick)")
        self.pygame, self.pad = pygame, pygame.joystick.Joystick(0)

    def read(self) -> tuple[dict[str, float], dict[str, bool]]:
        self.pygame.event.pump()
        raw = {k: float(self.pad.get_axis(i)) for k, i in self.AXES.items()}
        axes = {
            "lx": raw["lx"],
            "ly": -raw["ly"],  # pygame: stick up is negative
            "rx": raw["rx"],
            "ry": -raw["ry"],
            "lt": (raw["lt"] + 1.0) / 2.0,  # pygame triggers rest at -1
            "rt": (raw["rt"] + 1.0) / 2.0,
        }
        return axes, {k: bool(self.pad.get_button(i)) for k, i in self.BUTTONS.items()}


@TELEOP.register("gamepad", GamepadConfig)
class Gamepad(TeleopDevice):
    name = "gamepad"

    def __init__(self, cfg: GamepadConfig, source: PadSource | None = None):
        self.cfg = cfg
        self.source = source if source is not None else PygamePad()
        self.gripper = GripperLatch()
        self.takeover = False
        self.previous: dict[str, bool] = {}

    def command(self, obs: dict[str, np.ndarray], policy_action: np.ndarray) -> TeleopCommand:
        axes, buttons = self.source.read()
        pressed = {b for b, down in buttons.items() if down and not self.previous.get(b, False)}
        self.previous = dict(buttons)
        if "rb" in pressed:
            self.takeover = not self.takeover
        # stick up = forward (+x), stick left = +y (left), right stick up = +z
        move = deadzone(np.array([axes["ly"], -axes["lx"], axes["ry"]]), self.cfg.deadzone)
        t = self.cfg.trigger_threshold
        grip = self.gripper.update(axes["lt"] > t, axes["rt"] > t)
        events = frozenset(EVENT_BUTTONS[b] for b in pressed if b in EVENT_BUTTONS)
        return TeleopCommand(ee_action(move, grip, self.cfg.speed), self.takeover, events)
