"""ROS-free safety core of the command mux (ARCHITECTURE §3.5): pure clamps plus a small state machine.

No rclpy here: the ``command_mux`` node (``robot_rl.real.command_mux``) is a thin shell around
:class:`SafetyFilter`, and the default test tier checks these rules with property tests.

Units: actions are the normalized policy actions (``Box(-1, 1, (Da,))`` of the task). The workspace
box is in metres (world frame) and constrains the first three action dims, read as tool-centre-point
position deltas of ``ee_scale`` metres per unit (the sim's ``ee_delta`` control: 0.04 m per step).
Times are seconds of a monotonic clock, passed in by the caller (``now``), so tests drive time.

Events (one method each): a fresh action of a source (:meth:`SafetyFilter.on_action`), the control
tick at the start of each period (:meth:`~SafetyFilter.on_tick`), a watchdog check between ticks
(:meth:`~SafetyFilter.check_watchdog`), the intervention flag, the tcp position and the e-stop. Each
may return a command to publish. Rules, applied to every command:

1. **Mux**: the teleop action wins while intervention is true, the policy action otherwise; actions of
   the other source are ignored.
2. **Non-finite** (NaN/±inf anywhere, or the wrong length): the action is rejected, the output holds.
3. **Watchdog**: ``watchdog_periods`` control periods (a float) of wall time without a fresh action of
   the selected source -> hold, published at once (the check runs between ticks); the next fresh
   action clears it. Within that time a tick without a fresh action repeats the last command,
   labelled ``repeat:<source>``, never as a fresh command of its source.
4. **E-stop**: latched by :meth:`SafetyFilter.set_estop` (``True``); holds until released
   (``False``). Engaging it jumps straight to the hold command (not rate limited).
5. **Clamp**: to the action bounds, then to the workspace box. With a box configured, a command
   needs a usable tcp position (known, finite, received within ``max_tcp_age_s``); without one the
   output holds (``hold:tcp``): a safety rule is never skipped.
6. **Rate limit, per control period**: every command stays within ``max_delta`` of the command in
   force at the start of its period (the anchor) and of the previous command, so the command in
   force changes by at most ``max_delta`` between consecutive ticks, whatever the input rate. At most
   one fresh action per period is published at once; later ones in the same period wait for the
   next tick, where the latest of them goes out. In ``lockstep`` mode (a simulator that steps once
   per command) every command is its own period and ticks publish holds only.

"Hold" means: dims listed in ``delta_dims`` (velocity-like dims such as ee deltas) go to 0, the others
(absolute dims such as the gripper or joint position targets) keep the last output.

Every command carries a label (:data:`LABELS`): ``policy`` / ``teleop`` (a fresh action of that
source), ``repeat:policy`` / ``repeat:teleop`` (a tick repeating it), ``hold:<reason>`` with the
reasons of :data:`HOLD_REASONS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SOURCES = ("policy", "teleop", "hold")
HOLD_REASONS = {
    "startup": "no action of the selected source since the mux started",
    "watchdog": "the selected source sent nothing for watchdog_periods control periods",
    "estop": "the e-stop is latched",
    "released": "the e-stop was released; waiting for a fresh action",
    "rejected": "the selected source's action was non-finite or had the wrong length",
    "tcp": "a workspace box is set but the tcp position is unknown, non-finite or stale",
    "shutdown": "the command mux is shutting down",
}
LABELS = ("policy", "teleop", "repeat:policy", "repeat:teleop", *(f"hold:{r}" for r in HOLD_REASONS))


def label_source(label: str) -> str:
    """Whose command a label says is executed: ``policy``, ``teleop`` or ``hold``."""
    if label.startswith("repeat:"):
        return label[len("repeat:") :]
    return "hold" if label.startswith("hold") else label


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
    with np.errstate(over="ignore"):  # a huge (finite) tcp: the clip below bounds the result
        lo = np.clip((box_low - ee_pos) / ee_scale, low[:3], high[:3])
        hi = np.clip((box_high - ee_pos) / ee_scale, low[:3], high[:3])
    return lo, np.maximum(lo, hi)


def rate_limit(action: np.ndarray, previous: np.ndarray, max_delta: np.ndarray) -> np.ndarray:
    """Limit the per-dim change from ``previous`` to ``max_delta`` (both (Da,))."""
    return np.clip(action, previous - max_delta, previous + max_delta)


def rate_limit_two(
    action: np.ndarray, anchor: np.ndarray, previous: np.ndarray, max_delta: np.ndarray
) -> np.ndarray:
    """Limit ``action`` to within ``max_delta`` of both the period's ``anchor`` and the ``previous``
    command. The interval is never empty while ``|previous - anchor| <= max_delta`` (it holds
    ``previous``), which every output of :class:`SafetyFilter` keeps true."""
    return np.clip(action, np.maximum(anchor, previous) - max_delta, np.minimum(anchor, previous) + max_delta)


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
    max_delta: tuple[float, ...]  # max change of the command in force per control period, normalized
    period_s: float = 0.05  # control period (1 / control_hz), s
    watchdog_periods: float = 1.5  # control periods without a fresh action before hold (> 1)
    delta_dims: tuple[int, ...] = ()  # indices of velocity-like dims (hold -> 0)
    box_low: tuple[float, ...] | None = None  # m, world frame; None = no workspace box
    box_high: tuple[float, ...] | None = None
    ee_scale: float = 0.04  # m per normalized unit of the first three dims
    max_tcp_age_s: float = 0.25  # with a box: an older tcp position holds (hold:tcp); not in lockstep
    initial: tuple[float, ...] | None = None  # the first hold command; default all zeros
    lockstep: bool = False  # every command is its own control period (a sim stepping per command)

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
        if not (np.isfinite(self.period_s) and self.period_s > 0):
            raise ValueError(f"period_s must be > 0, got {self.period_s}")
        if not (np.isfinite(self.watchdog_periods) and self.watchdog_periods > 1):
            # a source publishing exactly at the control rate must never trip it
            raise ValueError(f"watchdog_periods must be > 1, got {self.watchdog_periods}")
        if not (np.isfinite(self.max_tcp_age_s) and self.max_tcp_age_s > 0):
            raise ValueError(f"max_tcp_age_s must be > 0, got {self.max_tcp_age_s}")
        if any(not 0 <= i < da for i in self.delta_dims):
            raise ValueError(f"delta_dims {list(self.delta_dims)} out of range for {da} action dims")
        if (self.box_low is None) != (self.box_high is None):
            raise ValueError("set both box_low and box_high, or neither")
        if self.box_low is not None:
            if len(self.box_low) != 3 or len(self.box_high) != 3 or da < 3:
                raise ValueError("box_low/box_high are (x, y, z) and need >= 3 action dims")
            if not np.all(np.isfinite([*self.box_low, *self.box_high])):
                raise ValueError("box_low/box_high must be finite")
            if np.any(np.array(self.box_low) > np.array(self.box_high)):
                raise ValueError(f"box_low {list(self.box_low)} must be <= box_high {list(self.box_high)}")
            if not self.ee_scale > 0:
                raise ValueError(f"ee_scale must be > 0, got {self.ee_scale}")
        if self.initial is not None and len(self.initial) != da:
            raise ValueError(f"initial has {len(self.initial)} dims, expected {da}")

    @property
    def dim(self) -> int:
        return len(self.low)

    @property
    def watchdog_s(self) -> float:
        return self.watchdog_periods * self.period_s


@dataclass(frozen=True)
class SafetyOutput:
    """One command to publish and why it is what it is."""

    action: np.ndarray  # (Da,) float64, finite, within bounds, rate limited
    source: str  # whose command runs: "policy", "teleop" or "hold"
    reason: str = ""  # "" (a fresh action), "repeat", or a key of HOLD_REASONS (source "hold")
    clamped: bool = False  # bounds/box/rate limit changed a source's action
    stamp: float | None = None  # the tag passed with the fresh action executed (e.g. its obs stamp)

    @property
    def label(self) -> str:
        """``policy``, ``teleop``, ``repeat:<source>`` or ``hold:<reason>`` (one of :data:`LABELS`)."""
        if self.source == "hold":
            return f"hold:{self.reason}"
        return f"repeat:{self.source}" if self.reason == "repeat" else self.source

    @property
    def watchdog(self) -> bool:
        return self.reason == "watchdog"

    @property
    def estop(self) -> bool:
        return self.reason == "estop"

    @property
    def rejected(self) -> bool:
        return self.reason == "rejected"


@dataclass
class SafetyFilter:
    """The mux's state machine: feed it events, publish what they return (None = nothing to publish)."""

    cfg: SafetyConfig
    _prev: np.ndarray = field(init=False)
    _prev_source: str = field(init=False, default="hold")  # who produced the command in force
    _prev_reason: str = field(init=False, default="startup")
    _anchor: np.ndarray = field(init=False)  # the command in force at the start of this period
    _published_fresh: bool = field(init=False, default=False)  # a fresh action went out this period
    _pending: tuple[np.ndarray, str, float | None] | None = field(init=False, default=None)
    _last_fresh: dict = field(init=False)  # source -> monotonic time of its last action
    _selected_since: float | None = field(init=False, default=None)  # when the selection last changed
    _intervention: bool = field(init=False, default=False)
    _tcp: np.ndarray | None = field(init=False, default=None)
    _tcp_time: float = field(init=False, default=-np.inf)
    _estop: bool = field(init=False, default=False)
    _released: bool = field(init=False, default=False)  # released, no fresh action since

    def __post_init__(self) -> None:
        c = self.cfg
        self._low = np.asarray(c.low, dtype=np.float64)
        self._high = np.asarray(c.high, dtype=np.float64)
        self._max_delta = np.asarray(c.max_delta, dtype=np.float64)
        self._delta_mask = np.zeros(c.dim, dtype=bool)
        self._delta_mask[list(c.delta_dims)] = True
        start = np.zeros(c.dim) if c.initial is None else np.asarray(c.initial, dtype=np.float64)
        self._prev = clamp_to_bounds(np.nan_to_num(start), self._low, self._high)
        self._anchor = self._prev.copy()
        self._last_fresh = {}

    # --- read-only state ----------------------------------------------------------------------------
    @property
    def last(self) -> np.ndarray:
        """The command in force (the last one returned)."""
        return self._prev.copy()

    @property
    def last_label(self) -> str:
        return SafetyOutput(self._prev, self._prev_source, self._prev_reason).label

    @property
    def estop_latched(self) -> bool:
        return self._estop

    @property
    def selected(self) -> str:
        return select_source(self._intervention)

    # --- inputs that return nothing ------------------------------------------------------------------
    def set_intervention(self, on: bool, now: float) -> None:
        """The latest ``/robot_rl/intervention``: a change gives the newly selected source a full
        watchdog interval from now before it must have sent an action."""
        if bool(on) != self._intervention:
            self._intervention = bool(on)
            self._selected_since = now

    def set_tcp(self, position: np.ndarray | None, now: float) -> None:
        """The tcp position (3,) in metres, world frame, received at ``now`` (may be non-finite)."""
        self._tcp = None if position is None else np.asarray(position, dtype=np.float64).reshape(-1)
        self._tcp_time = now

    # --- events that may publish -------------------------------------------------------------------
    def set_estop(self, engaged: bool, now: float) -> SafetyOutput | None:
        """Latch (``True``: returns the hold command, a jump, not rate limited) or release (``False``)."""
        if engaged and not self._estop:
            self._estop = True
            self._released = False
            out = clamp_to_bounds(hold_action(self._prev, self._delta_mask), self._low, self._high)
            self._anchor = out.copy()  # the jump is the one exception to the rate limit: limit from here
            return self._emit(out, "hold", "estop")
        if not engaged and self._estop:
            self._estop = False
            self._released = True
        return None

    def on_action(
        self, action: np.ndarray | None, source: str, now: float, stamp: float | None = None
    ) -> SafetyOutput | None:
        """A fresh action of ``source`` (``policy`` or ``teleop``); ``stamp`` is carried to the output.

        Returns the command to publish now, or None: the source is not selected (ignored), or a fresh
        action already went out this period (this one waits for the tick; a later one replaces it).
        """
        if source != self.selected:
            return None
        self._last_fresh[source] = now
        self._released = False
        if self.cfg.lockstep:
            self._anchor = self._prev.copy()  # every command is its own period
        elif self._published_fresh:
            self._pending = (action, source, stamp)
            return None
        self._published_fresh = True
        return self._command(action, source, now, stamp)

    def on_tick(self, now: float) -> SafetyOutput | None:
        """The start of a control period: the waiting action, a repeat, or a hold (None: a fresh
        action already went out in the period that ends, or a repeat in lockstep mode)."""
        out = None
        if self._pending is not None:
            action, source, stamp = self._pending
            self._pending = None
            out = self._command(action, source, now, stamp) if source == self.selected else None
        elif not self._published_fresh:
            out = self._idle(now)
            if out is not None and self.cfg.lockstep and out.source != "hold":
                out = None  # a lockstep sim steps on every command: no repeats
        self._published_fresh = False
        self._anchor = self._prev.copy()
        return out

    def check_watchdog(self, now: float) -> SafetyOutput | None:
        """Between ticks: the watchdog hold as soon as it is due (None otherwise, or when already held)."""
        if self._estop or self._prev_reason in ("watchdog", "startup", "released"):
            return None
        if self._silent_for(now) < self.cfg.watchdog_s:
            return None
        self._pending = None
        return self._hold("watchdog")

    def shutdown(self) -> SafetyOutput:
        """The last command before the mux stops: a hold (rate limited)."""
        self._pending = None
        return self._hold("shutdown")

    # --- internals ----------------------------------------------------------------------------------
    def _silent_for(self, now: float) -> float:
        """Seconds since the selected source (or the switch to it) last gave a sign of life."""
        last = self._last_fresh.get(self.selected)
        since = self._selected_since
        if last is None and since is None:
            return np.inf  # never heard of: the startup hold covers it
        return now - max(x for x in (last, since) if x is not None)

    def _idle(self, now: float) -> SafetyOutput:
        """A period without a fresh action: keep holding, or repeat the command in force."""
        if self._estop:
            return self._hold("estop")
        if self._released:
            return self._hold("released")
        if not self._last_fresh and self._selected_since is None:
            return self._hold("startup")
        if self._silent_for(now) >= self.cfg.watchdog_s:
            return self._hold("watchdog")
        if self._prev_source == "hold":  # e.g. after a rejected action: the hold goes on, same reason
            return self._hold(self._prev_reason)
        return self._command(self._prev, self._prev_source, now, None, repeat=True)

    def _command(
        self, action: np.ndarray | None, source: str, now: float, stamp: float | None, repeat: bool = False
    ) -> SafetyOutput:
        if self._estop:
            return self._hold("estop")
        arr = None if action is None else np.asarray(action, dtype=np.float64).reshape(-1)
        if arr is None or arr.shape != (self.cfg.dim,) or not np.all(np.isfinite(arr)):
            return self._hold("rejected")
        out = clamp_to_bounds(arr, self._low, self._high)
        if self.cfg.box_low is not None:
            tcp = self._tcp
            usable = (
                tcp is not None
                and tcp.shape == (3,)
                and bool(np.all(np.isfinite(tcp)))
                # lockstep: the sim moves only on commands, so the last tcp is current however old
                and (self.cfg.lockstep or now - self._tcp_time <= self.cfg.max_tcp_age_s)
            )
            if not usable:
                return self._hold("tcp")
            lo, hi = box_interval(
                tcp,
                self.cfg.ee_scale,
                np.asarray(self.cfg.box_low),
                np.asarray(self.cfg.box_high),
                self._low,
                self._high,
            )
            out[:3] = np.minimum(np.maximum(out[:3], lo), hi)
        out = rate_limit_two(out, self._anchor, self._prev, self._max_delta)
        out = clamp_to_bounds(out, self._low, self._high)  # prev is within bounds; keeps rounding safe
        return self._emit(out, source, "repeat" if repeat else "", bool(np.any(out != arr)), stamp)

    def _hold(self, reason: str) -> SafetyOutput:
        out = hold_action(self._prev, self._delta_mask)
        out = rate_limit_two(out, self._anchor, self._prev, self._max_delta)
        return self._emit(clamp_to_bounds(out, self._low, self._high), "hold", reason)

    def _emit(
        self, action: np.ndarray, source: str, reason: str, clamped: bool = False, stamp: float | None = None
    ) -> SafetyOutput:
        self._prev, self._prev_source, self._prev_reason = action, source, reason
        return SafetyOutput(action.copy(), source, reason, clamped, stamp)
