"""ROS-free safety core of the command mux (ARCHITECTURE §3.5): pure clamps plus a small state machine.

No rclpy here: the ``command_mux`` node (``robot_rl.real.command_mux``) is a thin shell around
:class:`SafetyFilter`, and the default test tier checks these rules with property tests.

Units: actions are the normalized policy actions (``Box(-1, 1, (Da,))`` of the task). The workspace
box is in metres (world frame) and constrains the first three action dims, read as tool-centre-point
position deltas of ``ee_scale`` metres per unit (the sim's ``ee_delta`` control: 0.04 m per step).

Rules, applied in this order to every published command:

1. **Mux**: the teleop action wins while intervention is true, the policy action otherwise. A
   repeated command (a missed period, rule 3) keeps the source of the command it repeats, so the
   reported source always says whose action is being executed.
2. **Non-finite** (NaN/±inf anywhere): the whole action is rejected and the output holds.
3. **Watchdog**: ``watchdog_periods`` consecutive control periods without a fresh action of the
   selected source -> hold and the ``watchdog`` flag; the next fresh action clears it.
4. **E-stop**: latched by :meth:`SafetyFilter.set_estop` (``True``); holds until released
   (``False``). Engaging it jumps straight to the hold command (not rate limited).
5. **Clamp**: to the action bounds, then to the workspace box (when a tcp position is known).
6. **Rate limit**: ``|out_t - out_{t-1}| <= max_delta`` per dim, per published command.

"Hold" means: dims listed in ``delta_dims`` (velocity-like dims such as ee deltas) go to 0, the others
(absolute dims such as the gripper or joint position targets) keep the last output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SOURCES = ("policy", "teleop", "hold")


# --- math ----------------------------------------------------------------------------------------


def clamp_to_bounds(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Clip ``action`` (Da,) into ``[low, high]``; non-finite entries must be handled before."""
    return np.minimum(np.maximum(action, low), high)


def box_interval(
    ee_pos: np.ndarray,
    ee_scale: float,
    box_low: np.ndarray,
    box_high: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Allowed range (3,) of the position-delta dims so that ``ee_pos + ee_scale * a`` stays in the box.

    The range is intersected with the action bounds ``low[:3], high[:3]``. When the tcp is already
    outside the box farther than one step can fix, the range collapses onto the bound that moves it
    back toward the box at full speed (never farther out).
    """
    lo = np.clip((box_low - ee_pos) / ee_scale, low[:3], high[:3])
    hi = np.clip((box_high - ee_pos) / ee_scale, low[:3], high[:3])
    return lo, np.maximum(lo, hi)


def rate_limit(action: np.ndarray, previous: np.ndarray, max_delta: np.ndarray) -> np.ndarray:
    """Limit the per-dim change from ``previous`` to ``max_delta`` (both (Da,))."""
    return np.clip(action, previous - max_delta, previous + max_delta)


def hold_action(previous: np.ndarray, delta_dims: np.ndarray) -> np.ndarray:
    """The hold command: 0 on velocity-like ``delta_dims`` (bool mask (Da,)), the last output elsewhere."""
    return np.where(delta_dims, 0.0, previous)


def select_source(intervention: bool) -> str:
    """The mux rule: teleop wins while the intervention flag is true."""
    return "teleop" if intervention else "policy"


# --- state -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SafetyConfig:
    """Limits of the safety filter (validated on construction; arrays are (Da,) or (3,))."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    max_delta: tuple[float, ...]  # max change per published command, normalized units
    watchdog_periods: int = 2
    delta_dims: tuple[int, ...] = ()  # indices of velocity-like dims (hold -> 0)
    box_low: tuple[float, ...] | None = None  # m, world frame; None = no workspace box
    box_high: tuple[float, ...] | None = None
    ee_scale: float = 0.04  # m per normalized unit of the first three dims
    initial: tuple[float, ...] | None = None  # the first hold command; default all zeros

    def __post_init__(self) -> None:
        da = len(self.low)
        if da == 0 or len(self.high) != da or len(self.max_delta) != da:
            raise ValueError(
                f"low, high and max_delta need the same non-zero length, got "
                f"{len(self.low)}, {len(self.high)}, {len(self.max_delta)}"
            )
        values = np.array([*self.low, *self.high, *self.max_delta], dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError("low, high and max_delta must be finite")
        if np.any(np.array(self.low) > np.array(self.high)):
            raise ValueError(f"low {list(self.low)} must be <= high {list(self.high)}")
        if np.any(np.array(self.max_delta) <= 0):
            raise ValueError(f"max_delta must be > 0, got {list(self.max_delta)}")
        if self.watchdog_periods < 1:
            raise ValueError(f"watchdog_periods must be >= 1, got {self.watchdog_periods}")
        if any(not 0 <= i < da for i in self.delta_dims):
            raise ValueError(f"delta_dims {list(self.delta_dims)} out of range for {da} action dims")
        if (self.box_low is None) != (self.box_high is None):
            raise ValueError("set both box_low and box_high, or neither")
        if self.box_low is not None:
            if len(self.box_low) != 3 or len(self.box_high) != 3 or da < 3:
                raise ValueError("box_low/box_high are (x, y, z) and need >= 3 action dims")
            if np.any(np.array(self.box_low) > np.array(self.box_high)):
                raise ValueError(f"box_low {list(self.box_low)} must be <= box_high {list(self.box_high)}")
            if not self.ee_scale > 0:
                raise ValueError(f"ee_scale must be > 0, got {self.ee_scale}")
        if self.initial is not None and len(self.initial) != da:
            raise ValueError(f"initial has {len(self.initial)} dims, expected {da}")

    @property
    def dim(self) -> int:
        return len(self.low)


@dataclass(frozen=True)
class SafetyOutput:
    """One published command and why it is what it is."""

    action: np.ndarray  # (Da,) float64, finite, within bounds, rate limited
    source: str  # "policy", "teleop" or "hold"
    watchdog: bool = False  # hold because the selected source went silent
    estop: bool = False  # hold because the e-stop is latched
    rejected: bool = False  # the selected action was non-finite (or the wrong size) and was dropped
    clamped: bool = False  # bounds/box/rate limit changed the action


@dataclass
class SafetyFilter:
    """Stateful shell around the pure rules above: one :meth:`step` per published command."""

    cfg: SafetyConfig
    _prev: np.ndarray = field(init=False)
    _missed: int = field(init=False, default=0)
    _estop: bool = field(init=False, default=False)
    _estop_fresh: bool = field(init=False, default=False)
    _prev_source: str = field(init=False, default="hold")  # who produced the last command

    def __post_init__(self) -> None:
        c = self.cfg
        self._low = np.asarray(c.low, dtype=np.float64)
        self._high = np.asarray(c.high, dtype=np.float64)
        self._max_delta = np.asarray(c.max_delta, dtype=np.float64)
        self._delta_mask = np.zeros(c.dim, dtype=bool)
        self._delta_mask[list(c.delta_dims)] = True
        start = np.zeros(c.dim) if c.initial is None else np.asarray(c.initial, dtype=np.float64)
        self._prev = clamp_to_bounds(np.nan_to_num(start), self._low, self._high)

    @property
    def last(self) -> np.ndarray:
        return self._prev.copy()

    @property
    def estop_latched(self) -> bool:
        return self._estop

    def set_estop(self, engaged: bool) -> None:
        """Latch (``True``) or release (``False``) the e-stop."""
        if engaged and not self._estop:
            self._estop_fresh = True
        self._estop = bool(engaged)

    def step(
        self,
        policy_action: np.ndarray | None,
        teleop_action: np.ndarray | None = None,
        intervention: bool = False,
        ee_pos: np.ndarray | None = None,
    ) -> SafetyOutput:
        """One control period. An action is ``None`` when no fresh one arrived since the last step.

        Args:
            policy_action: (Da,) fresh policy action, or None.
            teleop_action: (Da,) fresh teleop action, or None.
            intervention: the latest ``/robot_rl/intervention`` value.
            ee_pos: (3,) current tcp position in metres (world frame), for the workspace box.
        """
        source = select_source(intervention)
        raw = teleop_action if source == "teleop" else policy_action
        self._missed = 0 if raw is not None else self._missed + 1
        watchdog = self._missed >= self.cfg.watchdog_periods
        rejected = False
        target: np.ndarray | None = None
        if raw is not None:
            arr = np.asarray(raw, dtype=np.float64).reshape(-1)
            if arr.shape != (self.cfg.dim,) or not np.all(np.isfinite(arr)):
                rejected = True
            else:
                target = arr
        elif not watchdog:
            # a missed period within the watchdog budget repeats the last command, and it stays that
            # command's source's (e.g. right after a takeover, before the first teleop action arrives)
            target, source = self._prev, self._prev_source
        if self._estop:
            out = hold_action(self._prev, self._delta_mask)
            if not self._estop_fresh:  # the jump into e-stop is immediate, later steps stay limited
                out = rate_limit(out, self._prev, self._max_delta)
            self._estop_fresh = False
            self._prev = clamp_to_bounds(out, self._low, self._high)
            self._prev_source = "hold"
            return SafetyOutput(self._prev.copy(), "hold", watchdog, True, rejected)
        if target is None:
            source = "hold"
            target = hold_action(self._prev, self._delta_mask)
        out = clamp_to_bounds(target, self._low, self._high)
        if ee_pos is not None and self.cfg.box_low is not None and np.all(np.isfinite(ee_pos)):
            lo, hi = box_interval(
                np.asarray(ee_pos, dtype=np.float64),
                self.cfg.ee_scale,
                np.asarray(self.cfg.box_low),
                np.asarray(self.cfg.box_high),
                self._low,
                self._high,
            )
            out[:3] = np.minimum(np.maximum(out[:3], lo), hi)
        out = rate_limit(out, self._prev, self._max_delta)
        out = clamp_to_bounds(out, self._low, self._high)  # prev is within bounds; keeps rounding safe
        clamped = bool(np.any(out != target))
        self._prev, self._prev_source = out, source
        return SafetyOutput(out.copy(), source, watchdog, False, rejected, clamped)
