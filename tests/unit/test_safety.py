"""Safety core of the command mux (robot_rl.real.safety): hand-computed cases and property tests.

Runs without rclpy. The sequence properties draw up to 80 timed events per example and 400 examples,
i.e. well over 10,000 filtered commands per run. Time is passed in explicitly (``now``), so the
watchdog and the per-period rate limit are tested at any input rate, 1 kHz adversaries included.
"""

import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robot_rl.real.safety import (
    HOLD_REASONS,
    LABELS,
    SafetyConfig,
    SafetyFilter,
    box_interval,
    clamp_to_bounds,
    hold_action,
    label_source,
    rate_limit,
    rate_limit_two,
    select_source,
)

pytestmark = pytest.mark.unit

DA = 4
T = 0.05  # control period, s (20 Hz)
CFG = SafetyConfig(
    low=(-1.0, -1.0, -0.5, -1.0),
    high=(1.0, 0.8, 1.0, 1.0),
    max_delta=(0.25, 0.5, 0.1, 2.0),
    period_s=T,
    watchdog_periods=1.5,
    delta_dims=(0, 1, 2),
    box_low=(0.25, -0.35, 0.01),
    box_high=(0.80, 0.35, 0.50),
    ee_scale=0.04,
    max_tcp_age_s=0.25,
)
NO_BOX = SafetyConfig(
    **{**{k: getattr(CFG, k) for k in CFG.__dataclass_fields__}, "box_low": None, "box_high": None}
)
LOW, HIGH, MAX_DELTA = (np.array(v) for v in (CFG.low, CFG.high, CFG.max_delta))
EPS = 1e-12
TCP = np.array([0.5, 0.0, 0.2])  # well inside the box: the box does not bind


def _cfg(**kw):
    return SafetyConfig(**{**{k: getattr(CFG, k) for k in CFG.__dataclass_fields__}, **kw})


def _filter(cfg=CFG, tcp=TCP, now=0.0):
    f = SafetyFilter(cfg)
    if tcp is not None:
        f.set_tcp(tcp, now)
    return f


# --- hand-computed cases -----------------------------------------------------------------------


def test_pure_rules_by_hand():
    assert clamp_to_bounds(np.array([2.0, -3.0]), np.array([-1.0, -1.0]), np.array([1.0, 1.0])).tolist() == [
        1.0,
        -1.0,
    ]
    # prev 0.2, limit 0.25: 1.0 -> 0.45, -1.0 -> -0.05
    assert np.allclose(
        rate_limit(np.array([1.0, -1.0]), np.array([0.2, 0.2]), np.array([0.25, 0.25])), [0.45, -0.05]
    )
    # anchor 0.0, previous 0.2, limit 0.25: the window is [0.2 - 0.25, 0.0 + 0.25] = [-0.05, 0.25]
    assert np.allclose(
        rate_limit_two(np.array([1.0, -1.0]), np.zeros(2), np.array([0.2, 0.2]), np.full(2, 0.25)),
        [0.25, -0.05],
    )
    assert hold_action(np.array([0.3, 0.7]), np.array([True, False])).tolist() == [0.0, 0.7]
    assert select_source(True) == "teleop" and select_source(False) == "policy"
    assert [label_source(x) for x in ("policy", "repeat:teleop", "hold:tcp")] == ["policy", "teleop", "hold"]
    # tcp at x = 0.79 m, box x <= 0.80, 0.04 m/unit: at most +0.25 in x; y, z free within bounds
    lo, hi = box_interval(
        np.array([0.79, 0.0, 0.2]), 0.04, np.array(CFG.box_low), np.array(CFG.box_high), LOW, HIGH
    )
    assert np.allclose(hi, [0.25, 0.8, 1.0]) and np.allclose(lo, [-1.0, -1.0, -0.5])
    # tcp 0.5 m above the box top: z collapses onto the low bound (back down at full speed)
    lo, hi = box_interval(
        np.array([0.5, 0.0, 1.0]), 0.04, np.array(CFG.box_low), np.array(CFG.box_high), LOW, HIGH
    )
    assert lo[2] == hi[2] == -0.5


def test_filter_sequence_by_hand():
    f = _filter(NO_BOX)
    assert f.on_tick(0.0).label == "hold:startup"
    out = f.on_action(np.array([1.0, 1.0, 1.0, 1.0]), "policy", 0.01)
    # from 0: limited to max_delta per dim (gripper limit 2.0 lets 1.0 through)
    assert out.label == "policy" and np.allclose(out.action, [0.25, 0.5, 0.1, 1.0]) and out.clamped
    f.on_tick(T)
    out = f.on_action(np.array([np.nan, 0, 0, 0]), "policy", 2 * T - 0.001)
    # NaN: hold -> delta dims go to 0 (rate limited: 0.25-0.25, 0.5-0.5, 0.1-0.1), gripper keeps 1.0
    assert out.label == "hold:rejected" and out.rejected and np.allclose(out.action, [0.0, 0.0, 0.0, 1.0])
    assert f.on_tick(2 * T) is None  # that (rejected) action was this period's command
    # the next tick without a fresh action keeps holding, with the same reason (no bare "hold" label)
    assert f.on_tick(3 * T).label == "hold:rejected"
    f.on_action(np.array([0.1, 0.1, 0.1, -1.0]), "policy", 3 * T + 0.01)
    f.on_tick(4 * T)
    out = f.set_estop(True, 4 * T + 0.001)
    assert out.estop and out.label == "hold:estop" and np.allclose(out.action, [0.0, 0.0, 0.0, -1.0])
    assert f.on_action(np.array([0.5, 0.5, 0.5, 0.5]), "policy", 4 * T + 0.01).label == "hold:estop"
    assert f.on_tick(5 * T) is None
    assert f.on_tick(6 * T).label == "hold:estop"
    assert f.set_estop(False, 6 * T + 0.01) is None
    # released, no fresh action yet: a documented label, never a bare "hold"
    assert f.on_tick(7 * T).label == "hold:released"
    assert f.on_action(np.array([0.1, 0.0, 0.0, -1.0]), "policy", 7 * T + 0.01).label == "policy"
    assert set(LABELS) >= {"hold:" + r for r in HOLD_REASONS}


def test_watchdog_holds_after_watchdog_periods_of_wall_time_not_at_the_next_tick():
    f = _filter()
    f.on_action(np.array([0.2, 0.0, 0.0, 0.5]), "policy", 0.040)
    assert f.on_tick(T) is None  # a fresh action went out in this period: nothing to add
    # the next tick repeats it, labelled as a repeat (not as the policy's fresh command)
    out = f.on_tick(2 * T)
    assert out.label == "repeat:policy" and np.allclose(out.action, [0.2, 0.0, 0.0, 0.5])
    # 1.5 periods = 75 ms after the last action (t = 0.040): not at 0.114, at 0.116
    assert f.check_watchdog(0.114) is None
    out = f.check_watchdog(0.116)
    assert out.label == "hold:watchdog" and np.allclose(out.action, [0.0, 0.0, 0.0, 0.5])
    assert f.check_watchdog(0.12) is None  # published once; the ticks go on holding
    assert f.on_tick(3 * T).label == "hold:watchdog"
    f.set_tcp(TCP, 0.15)
    assert f.on_action(np.array([0.0, 0.0, 0.0, 0.5]), "policy", 0.16).label == "policy"


def test_teleop_wins_while_intervention_and_repeats_are_labelled():
    f = _filter()
    policy, teleop = np.array([0.2, 0, 0, 0]), np.array([-0.2, 0, 0, 0])
    assert f.on_action(policy, "policy", 0.0).label == "policy"
    f.on_tick(T)
    # takeover before the first teleop action arrives: the policy's command is still what runs
    f.set_intervention(True, T + 0.001)
    assert f.on_action(policy, "policy", T + 0.002) is None  # the policy is not selected: ignored
    out = f.on_tick(2 * T)
    assert out.label == "repeat:policy" and out.action[0] == pytest.approx(0.2)
    out = f.on_action(teleop, "teleop", 2 * T + 0.01)
    assert out.label == "teleop" and out.action[0] == pytest.approx(0.2 - 0.25)  # rate limit 0.25
    f.on_tick(3 * T)
    # hand-back before the policy's next action: the teleop command is repeated, labelled so
    f.set_intervention(False, 3 * T + 0.001)
    repeat = f.on_tick(4 * T)
    assert repeat.label == "repeat:teleop" and np.array_equal(repeat.action, out.action)
    # the policy gets 1.5 periods from the hand-back, then the watchdog holds
    assert f.check_watchdog(3 * T + 0.001 + 1.5 * T - 1e-6) is None
    assert f.check_watchdog(3 * T + 0.001 + 1.5 * T).label == "hold:watchdog"


def test_rate_limit_is_per_control_period_at_any_input_rate():
    """The issue's adversary: alternating +-1 at 1 kHz moved the command by 2.0 within 50 ms."""
    f = _filter(NO_BOX)
    in_force = [f.last]
    published = []
    for k in range(4):  # four periods of 50 ms, 50 actions each
        for i in range(50):
            sign = 1.0 if i % 2 == 0 else -1.0
            out = f.on_action(np.full(DA, sign), "policy", k * T + 0.0005 + i * 0.001)
            if out is not None:
                published.append(out)
        tick = f.on_tick((k + 1) * T)
        published.append(tick)
        in_force.append(f.last)
    steps = np.abs(np.diff(np.array(in_force), axis=0))
    assert np.all(steps <= MAX_DELTA + EPS)
    # one fresh action at once per period plus the latest waiting one at the tick: 2 per period
    assert len(published) == 8 and all(o.label == "policy" for o in published)


def test_lockstep_is_per_command():
    f = _filter(_cfg(lockstep=True, box_low=None, box_high=None))
    outs = [f.on_action(np.full(DA, 1.0), "policy", 0.0001 * i) for i in range(4)]
    # every command is its own period: 0.25, 0.5, 0.75, 1.0 in dim 0 (no waiting for a tick)
    assert [round(o.action[0], 6) for o in outs] == [0.25, 0.5, 0.75, 1.0]
    assert f.on_tick(T) is None  # no repeats in lockstep


@pytest.mark.parametrize(
    "tcp, at, why",
    [
        (None, 0.0, "never received"),
        (np.array([np.nan, 0.0, 0.2]), 0.0, "NaN"),
        (np.array([0.5, np.inf, 0.2]), 0.0, "inf"),
        (TCP, -0.26, "stale: 260 ms old, limit 250 ms"),
    ],
)
def test_an_unusable_tcp_holds_instead_of_skipping_the_box(tcp, at, why):
    f = SafetyFilter(CFG)
    if tcp is not None:
        f.set_tcp(tcp, at)
    out = f.on_action(np.array([1.0, 0.0, 0.0, 0.0]), "policy", 0.0)
    assert out.label == "hold:tcp" and out.action[0] == 0.0, why
    # with a real tcp at x = 0.79 m, the same action is clamped to +0.25 (the box edge)
    f.set_tcp(np.array([0.79, 0.0, 0.2]), 0.01)
    f.on_tick(T)
    out = f.on_action(np.array([1.0, 0.0, 0.0, 0.0]), "policy", T + 0.01)
    assert out.label == "policy" and out.action[0] == pytest.approx(0.25)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"high": (1.0,)}, "same non-zero length"),
        ({"max_delta": (0.1, 0.0, 0.1, 0.1)}, "max_delta must be > 0"),
        ({"watchdog_periods": 1.0}, "watchdog_periods must be > 1"),
        ({"period_s": 0.0}, "period_s must be > 0"),
        ({"max_tcp_age_s": float("nan")}, "max_tcp_age_s must be > 0"),
        ({"delta_dims": (7,)}, "out of range"),
        ({"box_high": None}, "both box_low and box_high"),
        ({"box_high": (1.0, float("inf"), 1.0)}, "box_low/box_high must be finite"),
        ({"low": (0.0, 2.0, 0.0, 0.0)}, "must be <= high"),
        ({"high": (1.0, float("nan"), 1.0, 1.0)}, "must be finite"),
    ],
)
def test_config_rejects_bad_limits(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _cfg(**kwargs)


# --- properties over timed event sequences -------------------------------------------------------

# any float, including NaN, ±inf and huge values
wild = st.floats(allow_nan=True, allow_infinity=True, width=64)
action = st.one_of(
    st.lists(wild, min_size=DA, max_size=DA).map(np.array),
    st.lists(st.floats(-2, 2), min_size=DA, max_size=DA).map(np.array),
    st.lists(st.floats(-2, 2), min_size=1, max_size=6).map(np.array),  # wrong lengths too
)
tcp_value = st.one_of(
    st.none(),
    st.lists(st.floats(-2.0, 2.0), min_size=3, max_size=3).map(np.array),
    st.lists(wild, min_size=3, max_size=3).map(np.array),
)
dt = st.one_of(st.just(0.0), st.floats(0.0, 0.001), st.floats(0.0, 0.04), st.floats(0.0, 0.4))
event = st.one_of(
    st.tuples(st.just("policy"), action, dt),
    st.tuples(st.just("teleop"), action, dt),
    st.tuples(st.just("tick"), st.none(), dt),
    st.tuples(st.just("watchdog"), st.none(), dt),
    st.tuples(st.just("intervention"), st.booleans(), dt),
    st.tuples(st.just("tcp"), tcp_value, dt),
    st.tuples(st.just("estop"), st.booleans(), dt),
)
SEQ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _simulate(cfg, events):
    """Feed ``events`` to a filter; yield (output, facts) for every published command, where facts are
    what the test tracks on its own (not read from the filter)."""
    f = SafetyFilter(cfg)
    now = 0.0
    actions = {}  # stamp -> the action handed in with it
    tcp, tcp_time = None, -np.inf
    intervention, switched_at = False, None
    last_fresh = {}
    latched = False
    for i, (kind, value, step) in enumerate(events):
        now += step
        jump = False
        if kind in ("policy", "teleop"):
            if kind == select_source(intervention):
                last_fresh[kind] = now
            actions[i] = value
            out = f.on_action(value, kind, now, stamp=i)
        elif kind == "tick":
            out = f.on_tick(now)
        elif kind == "watchdog":
            out = f.check_watchdog(now)
        elif kind == "intervention":
            if value != intervention:
                intervention, switched_at = value, now
            f.set_intervention(value, now)
            out = None
        elif kind == "tcp":
            tcp, tcp_time = value, now
            f.set_tcp(value, now)
            out = None
        else:
            jump = value and not latched
            latched = value
            out = f.set_estop(value, now)
        sel = select_source(intervention)
        heard = [t for t in (last_fresh.get(sel), switched_at) if t is not None]
        silent = now - max(heard) if heard else np.inf
        tcp_ok = (
            tcp is not None
            and tcp.shape == (3,)
            and bool(np.all(np.isfinite(tcp)))
            and (cfg.lockstep or now - tcp_time <= cfg.max_tcp_age_s)
        )
        facts = dict(
            kind=kind, jump=jump, latched=latched, actions=actions, silent=silent, tcp=tcp, tcp_ok=tcp_ok
        )
        yield f, out, facts


@SEQ
@given(st.lists(event, min_size=1, max_size=80), st.booleans())
def test_every_command_is_finite_bounded_and_labelled(events, box):
    cfg = CFG if box else NO_BOX
    for _f, out, _facts in _simulate(cfg, events):
        if out is not None:
            assert out.action.shape == (DA,) and np.all(np.isfinite(out.action))
            assert np.all(out.action >= LOW) and np.all(out.action <= HIGH)
            assert out.label in LABELS


@SEQ
@given(st.lists(event, min_size=1, max_size=80), st.booleans())
def test_rate_limit_per_message_and_per_control_tick(events, box):
    """Between consecutive ticks the command in force moves at most max_delta (the e-stop's jump to
    hold is the one documented exception), and so does every single command."""
    cfg = CFG if box else NO_BOX
    prev = SafetyFilter(cfg).last
    at_last_tick, jumped = prev, False
    for f, out, facts in _simulate(cfg, events):
        if out is not None:
            if not facts["jump"]:
                assert np.all(np.abs(out.action - prev) <= MAX_DELTA + EPS)
            prev = out.action
        jumped |= facts["jump"]
        if facts["kind"] == "tick":
            if not jumped:
                assert np.all(np.abs(f.last - at_last_tick) <= MAX_DELTA + EPS)
            at_last_tick, jumped = f.last, False


@SEQ
@given(st.lists(event, min_size=1, max_size=80))
def test_nan_never_passes_and_the_box_never_skips(events):
    for _f, out, facts in _simulate(CFG, events):
        if out is None:
            continue
        if out.label in ("policy", "teleop"):  # a fresh action: finite, right size
            given_action = np.asarray(facts["actions"][out.stamp], dtype=np.float64)
            assert given_action.shape == (DA,) and np.all(np.isfinite(given_action))
        if out.source in ("policy", "teleop"):  # fresh or repeated: only with a usable tcp
            assert facts["tcp_ok"], out.label
            lo, hi = box_interval(
                facts["tcp"], CFG.ee_scale, np.array(CFG.box_low), np.array(CFG.box_high), LOW, HIGH
            )
            inside = (out.action[:3] >= lo - 1e-9) & (out.action[:3] <= hi + 1e-9)
            # outside the box only where the rate limit did not allow reaching it this command
            assert np.all(inside | out.clamped)


@SEQ
@given(st.lists(event, min_size=1, max_size=80))
def test_estop_holds_until_released(events):
    for f, out, facts in _simulate(NO_BOX, events):
        if facts["latched"]:
            assert out is None or out.label == "hold:estop"
            assert f.last_label == "hold:estop"
            assert np.all(f.last[:3] == 0.0) or not facts["jump"]


@SEQ
@given(st.lists(event, min_size=1, max_size=80), st.booleans())
def test_watchdog_check_always_leaves_a_hold_in_force_once_the_source_is_silent(events, box):
    cfg = CFG if box else NO_BOX
    for f, out, facts in _simulate(cfg, events):
        if facts["kind"] == "watchdog" and facts["silent"] >= cfg.watchdog_s:
            assert f.last_label.startswith("hold:"), (f.last_label, facts["silent"])
        if out is not None and out.label == "hold:watchdog" and facts["kind"] == "watchdog":
            assert facts["silent"] >= cfg.watchdog_s


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(wild, min_size=DA, max_size=DA).map(np.array),
    st.lists(st.floats(-1, 1), min_size=DA, max_size=DA),
    tcp_value,
)
def test_single_command_clamp_on_any_input(action, start, tcp):
    start = np.clip(np.array(start), LOW, HIGH)
    f = SafetyFilter(_cfg(initial=tuple(start)))
    f.set_tcp(tcp, 0.0)
    out = f.on_action(action, "policy", 0.0)
    assert np.all(np.isfinite(out.action)) and np.all(out.action >= LOW) and np.all(out.action <= HIGH)
    assert np.all(np.abs(out.action - start) <= MAX_DELTA + EPS)


def test_safety_core_does_not_import_rclpy():
    import importlib

    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "rclpy" or k.startswith("rclpy.")}
    sys.modules["rclpy"] = None  # any import of rclpy now raises ImportError
    try:
        sys.modules.pop("robot_rl.real.safety", None)
        importlib.import_module("robot_rl.real.safety")
    finally:
        del sys.modules["rclpy"]
        sys.modules.update(saved)
