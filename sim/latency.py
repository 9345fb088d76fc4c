"""Observation and action delays, to evaluate (or train) a policy under real-robot latencies.

The model is step-synchronous (one wrapper step = one control period ``1 / control_hz``):

- **Observation delay** ``obs_delay_steps = k_o``: at every step the policy receives the
  observation that the environment produced ``k_o`` steps earlier (camera/state-estimation lag).
  Right after ``reset`` fewer than ``k_o`` observations exist, so the policy sees the reset
  observation until the queue has filled (the oldest one available, never a made-up one).
- **Action delay** ``inference_delay_steps + actuation_delay_steps = k_a``: the action passed to
  :meth:`LatencyWrapper.step` at step ``t`` is executed by the environment at step ``t + k_a``;
  meanwhile the environment executes the earlier actions in order. During the first ``k_a`` steps
  after ``reset`` no action has arrived yet and ``hold_action`` (default: zeros, which for the
  normalized delta controllers means "stay put") is executed. In a step-synchronous loop the time
  the policy spends thinking (inference) and the time the command spends in transit (actuation)
  have the same effect, so the two simply add; they are separate arguments only for bookkeeping.
- The reward, ``terminated``, ``truncated`` and ``info`` returned are the environment's *current*
  ones (ground truth for the evaluator, not something the policy should condition on). ``info``
  gains ``"executed_action"`` (what the environment actually ran this step).
- ``reset`` clears both queues.

Delays given in milliseconds convert with :func:`ms_to_steps` (rounded *up* to whole control
periods: a zero-order-hold controller only picks up a command at the next step boundary).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np


def ms_to_steps(delay_ms: float, control_hz: float) -> int:
    """Convert a delay in milliseconds to whole control steps at ``control_hz`` (rounded up).

    Args:
        delay_ms: the delay in milliseconds (>= 0).
        control_hz: the control rate in Hz (> 0).

    Returns:
        ``ceil(delay_ms * control_hz / 1000)``, with a 1e-9 tolerance so that exact multiples of
        the control period (e.g. 100 ms at 20 Hz = 2 steps) do not round up because of float error.

    Raises:
        ValueError: on a negative or non-finite delay or a non-positive control rate.
    """
    if not math.isfinite(delay_ms) or delay_ms < 0:
        raise ValueError(f"delay_ms must be finite and >= 0, got {delay_ms}")
    if not math.isfinite(control_hz) or control_hz <= 0:
        raise ValueError(f"control_hz must be finite and > 0, got {control_hz}")
    return math.ceil(delay_ms * control_hz / 1000.0 - 1e-9)


def _copy_obs(obs: Any) -> Any:
    """Copy an observation (array, dict of arrays, or scalar) so later env mutation can't alter it."""
    if isinstance(obs, dict):
        return {k: _copy_obs(v) for k, v in obs.items()}
    if isinstance(obs, np.ndarray):
        return obs.copy()
    return obs


def _check_steps(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an int number of control steps, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


class LatencyWrapper(gym.Wrapper):
    """Delays observations and actions by whole control steps (see the module docstring).

    Args:
        env: the environment to wrap (any gymnasium env with a ``Box`` action space).
        inference_delay_steps: control steps the policy needs to produce an action.
        actuation_delay_steps: control steps between a command leaving the policy and taking effect.
        obs_delay_steps: age, in control steps, of the observation the policy receives.
        hold_action: what is executed before the first delayed action arrives; default zeros.

    Raises:
        ValueError: on a negative or non-integer delay, or a ``hold_action`` outside the action space.
    """

    def __init__(
        self,
        env: gym.Env,
        inference_delay_steps: int = 0,
        actuation_delay_steps: int = 0,
        obs_delay_steps: int = 0,
        hold_action: np.ndarray | None = None,
    ) -> None:
        super().__init__(env)
        self.inference_delay_steps = _check_steps("inference_delay_steps", inference_delay_steps)
        self.actuation_delay_steps = _check_steps("actuation_delay_steps", actuation_delay_steps)
        self.obs_delay_steps = _check_steps("obs_delay_steps", obs_delay_steps)
        space = env.action_space
        if not isinstance(space, gym.spaces.Box):
            raise ValueError(f"LatencyWrapper needs a Box action space, got {space}")
        if hold_action is None:
            hold = np.zeros(space.shape, dtype=space.dtype)
        else:
            hold = np.asarray(hold_action, dtype=space.dtype).reshape(space.shape)
            if not space.contains(hold):
                raise ValueError(f"hold_action {hold} is outside the action space {space}")
        self.hold_action = hold
        self._actions: deque[np.ndarray] = deque()
        self._obs: deque[Any] = deque(maxlen=self.obs_delay_steps + 1)

    @classmethod
    def from_ms(
        cls,
        env: gym.Env,
        control_hz: float | None = None,
        inference_ms: float = 0.0,
        actuation_ms: float = 0.0,
        obs_ms: float = 0.0,
        hold_action: np.ndarray | None = None,
    ) -> LatencyWrapper:
        """Build the wrapper from delays in milliseconds (each rounded up with :func:`ms_to_steps`).

        Args:
            env: the environment to wrap.
            control_hz: control rate in Hz; default: ``env.unwrapped.control_hz`` if present, else
                ``env.metadata["render_fps"]`` (our envs render one frame per control step).
            inference_ms: policy inference time.
            actuation_ms: command transport + low-level controller delay.
            obs_ms: observation age (sensor, transport, preprocessing).
            hold_action: see the class docstring.

        Raises:
            ValueError: if the control rate cannot be found or a delay is invalid.
        """
        if control_hz is None:
            control_hz = getattr(env.unwrapped, "control_hz", None) or env.metadata.get("render_fps")
            if not control_hz:
                raise ValueError("control_hz not given and the env exposes neither control_hz nor render_fps")
        return cls(
            env,
            inference_delay_steps=ms_to_steps(inference_ms, control_hz),
            actuation_delay_steps=ms_to_steps(actuation_ms, control_hz),
            obs_delay_steps=ms_to_steps(obs_ms, control_hz),
            hold_action=hold_action,
        )

    @property
    def action_delay_steps(self) -> int:
        """Total delay between ``step(action)`` and its execution: inference + actuation."""
        return self.inference_delay_steps + self.actuation_delay_steps

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Reset the env and both queues; the returned observation is the fresh reset observation."""
        obs, info = self.env.reset(**kwargs)
        self._actions = deque(self.hold_action.copy() for _ in range(self.action_delay_steps))
        self._obs.clear()
        first = _copy_obs(obs)
        self._obs.extend(first for _ in range(self.obs_delay_steps + 1))
        return _copy_obs(first), info

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Queue ``action``, execute the one due now, and return the delayed observation."""
        act = np.asarray(action, dtype=self.action_space.dtype)
        if act.shape != self.action_space.shape:
            raise ValueError(f"action shape {act.shape} != action space shape {self.action_space.shape}")
        if not np.all(np.isfinite(act)):
            raise ValueError(f"action contains NaN or inf: {act}")
        self._actions.append(act.copy())
        executed = self._actions.popleft()
        obs, reward, terminated, truncated, info = self.env.step(executed)
        self._obs.append(_copy_obs(obs))
        info = dict(info)
        info["executed_action"] = executed
        return _copy_obs(self._obs[0]), reward, terminated, truncated, info
