"""Safety core of the command mux (robot_rl.real.safety): hand-computed cases and property tests.

Runs without rclpy. The sequence properties draw up to 60 steps per example and 400 examples, i.e.
well over 10,000 filtered commands per run (issue 7: >= 10,000 cases).
"""

import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robot_rl.real.safety import (
    SafetyConfig,
    SafetyFilter,
    box_interval,
    clamp_to_bounds,
    hold_action,
    rate_limit,
    select_source,
)

pytestmark = pytest.mark.unit

DA = 4
CFG = SafetyConfig(
    low=(-1.0, -1.0, -0.5, -1.0),
    high=(1.0, 0.8, 1.0, 1.0),
    max_delta=(0.25, 0.5, 0.1, 2.0),
    watchdog_periods=3,
    delta_dims=(0, 1, 2),
    box_low=(0.25, -0.35, 0.01),
    box_high=(0.80, 0.35, 0.50),
    ee_scale=0.04,
)
LOW, HIGH, MAX_DELTA = (np.array(v) for v in (CFG.low, CFG.high, CFG.max_delta))
EPS = 1e-12

# any float, including NaN, ±inf and huge values
wild = st.floats(allow_nan=True, allow_infinity=True, width=64)
maybe_action = st.one_of(st.none(), st.lists(wild, min_size=DA, max_size=DA).map(np.array))
ee_pos = st.one_of(st.none(), st.lists(st.floats(-2.0, 2.0), min_size=3, max_size=3).map(np.array))
# (policy action or None, teleop action or None, intervention, ee_pos, estop command or None)
step_inputs = st.tuples(
    maybe_action, maybe_action, st.booleans(), ee_pos, st.sampled_from([None, True, False])
)
SEQ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _run(steps):
    f = SafetyFilter(CFG)
    for policy, teleop, intervention, pos, estop in steps:
        prev = f.last
        if estop is not None:
            f.set_estop(estop)
        latched = f.estop_latched
        out = f.step(policy, teleop, intervention, pos)
        yield prev, out, (policy, teleop, intervention, pos, estop, latched)


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
    assert hold_action(np.array([0.3, 0.7]), np.array([True, False])).tolist() == [0.0, 0.7]
    assert select_source(True) == "teleop" and select_source(False) == "policy"
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
    f = SafetyFilter(CFG)
    out = f.step(np.array([1.0, 1.0, 1.0, 1.0]))
    # from 0: limited to max_delta per dim (gripper limit 2.0 lets 1.0 through)
    assert out.source == "policy" and np.allclose(out.action, [0.25, 0.5, 0.1, 1.0]) and out.clamped
    out = f.step(np.array([np.nan, 0, 0, 0]))
    # NaN: hold -> delta dims go to 0 (rate limited: 0.25-0.25, 0.5-0.5, 0.1-0.1), gripper keeps 1.0
    assert out.rejected and out.source == "hold" and np.allclose(out.action, [0.0, 0.0, 0.0, 1.0])
    f.step(np.array([0.1, 0.1, 0.1, -1.0]))
    f.set_estop(True)
    out = f.step(np.array([0.5, 0.5, 0.5, 0.5]))
    assert out.estop and out.source == "hold" and np.allclose(out.action, [0.0, 0.0, 0.0, -1.0])
    f.set_estop(False)
    assert f.step(np.array([0.1, 0.0, 0.0, -1.0])).source == "policy"


def test_watchdog_triggers_after_exactly_n_missed_periods():
    f = SafetyFilter(CFG)
    f.step(np.array([0.2, 0.0, 0.0, 0.5]))
    outs = [f.step(None) for _ in range(4)]
    # periods 1 and 2 repeat the last command; period 3 (= watchdog_periods) holds
    assert [o.watchdog for o in outs] == [False, False, True, True]
    assert [o.source for o in outs] == ["policy", "policy", "hold", "hold"]
    assert np.allclose(outs[1].action, [0.2, 0.0, 0.0, 0.5]) and np.allclose(outs[2].action, [0.0, 0, 0, 0.5])
    assert not f.step(np.array([0.0, 0.0, 0.0, 0.5])).watchdog


def test_teleop_wins_while_intervention():
    f = SafetyFilter(CFG)
    out = f.step(np.array([0.2, 0, 0, 0]), np.array([-0.2, 0, 0, 0]), intervention=True)
    assert out.source == "teleop" and out.action[0] == pytest.approx(-0.2)
    # intervention with no fresh teleop action counts as a missed period of the teleop stream: the last
    # (teleop) command is repeated and stays labelled teleop
    assert f.step(np.array([0.2, 0, 0, 0]), None, intervention=True).source == "teleop"


def test_a_repeated_command_keeps_the_source_that_produced_it():
    f = SafetyFilter(CFG)
    policy, teleop = np.array([0.2, 0, 0, 0]), np.array([-0.2, 0, 0, 0])
    assert f.step(policy).source == "policy"
    # takeover before the first teleop action arrives: the policy's command is still what runs
    out = f.step(None, None, intervention=True)
    assert out.source == "policy" and out.action[0] == pytest.approx(0.2)
    out = f.step(None, teleop, intervention=True)
    assert out.source == "teleop" and out.action[0] == pytest.approx(0.2 - 0.25)  # rate limit 0.25
    # hand-back before the policy's next action: the teleop command is repeated, labelled teleop
    repeat = f.step(None, None, intervention=False)
    assert repeat.source == "teleop" and np.array_equal(repeat.action, out.action)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"high": (1.0,)}, "same non-zero length"),
        ({"max_delta": (0.1, 0.0, 0.1, 0.1)}, "max_delta must be > 0"),
        ({"watchdog_periods": 0}, "watchdog_periods must be >= 1"),
        ({"delta_dims": (7,)}, "out of range"),
        ({"box_high": None}, "both box_low and box_high"),
        ({"low": (0.0, 2.0, 0.0, 0.0)}, "must be <= high"),
        ({"high": (1.0, float("nan"), 1.0, 1.0)}, "must be finite"),
    ],
)
def test_config_rejects_bad_limits(kwargs, match):
    base = {k: getattr(CFG, k) for k in CFG.__dataclass_fields__}
    with pytest.raises(ValueError, match=match):
        SafetyConfig(**{**base, **kwargs})


# --- properties ----------------------------------------------------------------------------------


@SEQ
@given(st.lists(step_inputs, min_size=1, max_size=60))
def test_output_always_finite_and_within_bounds(steps):
    for _prev, out, _inputs in _run(steps):
        assert out.action.shape == (DA,) and np.all(np.isfinite(out.action))
        assert np.all(out.action >= LOW) and np.all(out.action <= HIGH)
        assert out.source in ("policy", "teleop", "hold")


@SEQ
@given(st.lists(step_inputs, min_size=1, max_size=60))
def test_rate_limit_holds_except_the_estop_jump(steps):
    just_engaged = False
    f = SafetyFilter(CFG)
    for policy, teleop, intervention, pos, estop in steps:
        prev = f.last
        if estop is not None:
            just_engaged = estop and not f.estop_latched
            f.set_estop(estop)
        else:
            just_engaged = False
        out = f.step(policy, teleop, intervention, pos)
        if not just_engaged:
            assert np.all(np.abs(out.action - prev) <= MAX_DELTA + EPS)


@SEQ
@given(st.lists(step_inputs, min_size=1, max_size=60))
def test_box_is_respected_whenever_the_rate_limit_allows(steps):
    for prev, out, (_p, _t, _i, pos, _e, _l) in _run(steps):
        if pos is None or out.estop:
            continue
        lo, hi = box_interval(pos, CFG.ee_scale, np.array(CFG.box_low), np.array(CFG.box_high), LOW, HIGH)
        reachable = (prev[:3] - MAX_DELTA[:3] <= hi + EPS) & (prev[:3] + MAX_DELTA[:3] >= lo - EPS)
        a = out.action[:3]
        inside = (a >= lo - 1e-9) & (a <= hi + 1e-9)
        assert np.all(inside | ~reachable)
        # where the box is out of reach this step, the output moves toward it at the rate limit
        toward = np.where(
            a > hi, np.isclose(a, prev[:3] - MAX_DELTA[:3]), np.isclose(a, prev[:3] + MAX_DELTA[:3])
        )
        assert np.all(inside | toward)


@SEQ
@given(st.lists(step_inputs, min_size=1, max_size=60))
def test_estop_holds_until_released(steps):
    for prev, out, (_p, _t, _i, _pos, _estop, latched) in _run(steps):
        if latched:
            assert out.estop and out.source == "hold"
            # delta dims never move away from 0, absolute dims never change
            assert np.all(np.abs(out.action[:3]) <= np.abs(prev[:3]) + EPS)
            assert out.action[3] == prev[3]
        else:
            assert not out.estop


@SEQ
@given(st.lists(step_inputs, min_size=1, max_size=60))
def test_nan_never_passes_and_watchdog_counts_missed_periods(steps):
    missed = 0
    for _prev, out, (policy, teleop, intervention, _pos, _e, _l) in _run(steps):
        raw = teleop if intervention else policy
        missed = 0 if raw is not None else missed + 1
        assert out.watchdog == (missed >= CFG.watchdog_periods)
        if raw is not None and not np.all(np.isfinite(raw)):
            assert out.rejected and out.source == "hold"
        if out.source in ("policy", "teleop") and raw is not None:
            assert np.all(np.isfinite(raw))


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(wild, min_size=DA, max_size=DA).map(np.array),
    st.lists(st.floats(-1, 1), min_size=DA, max_size=DA),
)
def test_single_step_clamp_on_any_input(action, start):
    start = np.clip(np.array(start), LOW, HIGH)
    f = SafetyFilter(
        SafetyConfig(**{**{k: getattr(CFG, k) for k in CFG.__dataclass_fields__}, "initial": tuple(start)})
    )
    out = f.step(action, ee_pos=np.array([0.5, 0.0, 0.2]))
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
