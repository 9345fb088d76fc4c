"""Unit tests of robot_rl.sim.latency with hand-worked sequences (a fake env: no MuJoCo needed)."""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest

from robot_rl.sim.latency import LatencyWrapper, ms_to_steps

pytestmark = [pytest.mark.unit]


class CounterEnv(gym.Env):
    """Observation = number of steps since reset; records every action it executes."""

    metadata: ClassVar[dict] = {"render_fps": 20}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0, np.inf, (1,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.executed: list[np.ndarray] = []
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.executed = []
        return np.array([0.0]), {"reset": True}

    def step(self, action):
        self.executed.append(np.array(action, copy=True))
        self.t += 1
        return np.array([float(self.t)]), float(self.t), False, False, {"t": self.t}


def _act(i: float) -> np.ndarray:
    return np.array([i / 10, -i / 10], dtype=np.float32)


def _run(env: LatencyWrapper, n: int) -> tuple[list[float], list[float]]:
    """Reset, step actions 1..n; return (observations seen: reset + n steps, first action dim executed)."""
    obs, _ = env.reset(seed=0)
    seen = [float(obs[0])]
    for i in range(1, n + 1):
        obs, *_ = env.step(_act(i))
        seen.append(float(obs[0]))
    executed = [round(float(a[0]) * 10, 6) for a in env.unwrapped.executed]
    return seen, executed


def test_no_delay_is_transparent():
    seen, executed = _run(LatencyWrapper(CounterEnv()), 4)
    assert seen == [0, 1, 2, 3, 4]
    assert executed == [1, 2, 3, 4]


def test_obs_delay_two_steps():
    # the policy sees the obs of 2 steps earlier; the reset obs until the queue has filled
    seen, executed = _run(LatencyWrapper(CounterEnv(), obs_delay_steps=2), 5)
    assert seen == [0, 0, 0, 1, 2, 3]
    assert executed == [1, 2, 3, 4, 5]


def test_actuation_delay_holds_then_shifts():
    seen, executed = _run(LatencyWrapper(CounterEnv(), actuation_delay_steps=2), 5)
    assert seen == [0, 1, 2, 3, 4, 5]
    assert executed == [0, 0, 1, 2, 3]  # two hold (zero) actions, then actions 1, 2, 3


def test_inference_and_actuation_delays_add_and_custom_hold():
    hold = np.array([0.5, 0.5], dtype=np.float32)
    env = LatencyWrapper(CounterEnv(), inference_delay_steps=1, actuation_delay_steps=1, hold_action=hold)
    assert env.action_delay_steps == 2
    _, executed = _run(env, 4)
    assert executed == [5, 5, 1, 2]


def test_both_delays_and_info():
    env = LatencyWrapper(CounterEnv(), actuation_delay_steps=1, obs_delay_steps=1)
    obs, info = env.reset()
    assert obs[0] == 0 and info == {"reset": True}
    obs, reward, _, _, info = env.step(_act(7))
    # reward/info are the env's current ones; executed action is the hold action
    assert obs[0] == 0 and reward == 1.0 and info["t"] == 1
    np.testing.assert_array_equal(info["executed_action"], np.zeros(2, np.float32))
    obs, reward, *_, info = env.step(_act(8))
    assert obs[0] == 1 and reward == 2.0
    np.testing.assert_allclose(info["executed_action"], _act(7))


def test_reset_clears_queues():
    env = LatencyWrapper(CounterEnv(), actuation_delay_steps=2, obs_delay_steps=2)
    _run(env, 5)
    seen, executed = _run(env, 3)  # nothing from the first episode leaks into the second
    assert seen == [0, 0, 0, 1]
    assert executed == [0, 0, 1]


def test_observation_is_a_copy():
    class MutatingEnv(CounterEnv):
        def __init__(self):
            super().__init__()
            self.buf = np.zeros(1)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.buf[:] = 0
            return self.buf, {}

        def step(self, action):
            _, *rest = super().step(action)
            self.buf[:] = self.t  # the env reuses its buffer
            return (self.buf, *rest)

    env = LatencyWrapper(MutatingEnv(), obs_delay_steps=1)
    env.reset()
    assert env.step(_act(1))[0][0] == 0
    assert env.step(_act(1))[0][0] == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"obs_delay_steps": -1},
        {"actuation_delay_steps": -2},
        {"inference_delay_steps": -1},
        {"obs_delay_steps": 1.5},
        {"hold_action": np.array([2.0, 0.0])},
    ],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        LatencyWrapper(CounterEnv(), **kwargs)


def test_nan_action_raises_before_queueing():
    env = LatencyWrapper(CounterEnv(), actuation_delay_steps=3)
    env.reset()
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0.0], np.float32))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, np.float32))


def test_ms_to_steps():
    assert ms_to_steps(0, 20) == 0
    assert ms_to_steps(30, 20) == 1  # 30 ms < one 50 ms period -> next step boundary
    assert ms_to_steps(50, 20) == 1
    assert ms_to_steps(100, 20) == 2  # exact multiple: no float round-up
    assert ms_to_steps(0.3 * 1000, 10) == 3
    assert ms_to_steps(101, 20) == 3
    for bad in [(-1, 20), (10, 0), (float("nan"), 20), (10, -5)]:
        with pytest.raises(ValueError):
            ms_to_steps(*bad)


def test_from_ms_reads_control_rate():
    env = LatencyWrapper.from_ms(CounterEnv(), inference_ms=40, actuation_ms=60, obs_ms=120)  # 20 Hz
    assert (env.inference_delay_steps, env.actuation_delay_steps, env.obs_delay_steps) == (1, 2, 3)
    env = LatencyWrapper.from_ms(CounterEnv(), control_hz=100, obs_ms=25)
    assert env.obs_delay_steps == 3
