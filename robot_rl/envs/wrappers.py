"""Environment wrappers shared by algorithms.

:class:`BaseActionWrapper` puts a frozen base policy *behind* the environment (ResFiT, Ankile et al.
2025; docs/rl.md): every observation gains ``obs["base_action"]``, the base's next action for that
observation, so the residual actor sees ``(s, a_b)`` and the replay buffer stores ``a_b`` with
``s`` and ``a_b'`` with ``s'`` for free. The base's chunk queue is reset at every ``reset()`` —
per environment — so chunks never leak across episodes (amazon-far/resfit issue #5).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from robot_rl.teleop.base import END, FAILURE, RERECORD, SUCCESS

BASE_ACTION_KEY = "base_action"


class BaseActionWrapper(gym.ObservationWrapper):
    """Adds ``base_action`` (float32 ``[Da]``) from ``base_policy.act(obs)`` to each observation."""

    def __init__(self, env: gym.Env, base_policy: Any):
        super().__init__(env)
        self.base_policy = base_policy
        spaces = dict(env.observation_space.spaces)  # type: ignore[attr-defined]
        spaces[BASE_ACTION_KEY] = gym.spaces.Box(-1.0, 1.0, env.action_space.shape, np.float32)
        self.observation_space = gym.spaces.Dict(spaces)

    def reset(self, **kwargs: Any):
        self.base_policy.reset()  # a new episode: empty chunk queue and observation history
        return super().reset(**kwargs)

    def observation(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        action = np.asarray(self.base_policy.act(observation), dtype=np.float32)
        return {**observation, BASE_ACTION_KEY: np.clip(action, -1.0, 1.0)}


class InterventionWrapper(gym.Wrapper):
    """Human-in-the-loop: a teleop device may replace the agent's action (HIL-SERL; docs/hil.md).

    Each ``step(action)`` asks the device for a command; while it takes over, the environment executes
    the device's action instead. ``info`` gains ``executed_action`` (what the robot did: store this,
    not the agent's proposal), ``is_intervention``, ``intervention_id`` (the burst index within the
    episode, −1 when the agent acted), ``teleop_events`` and ``rerecord``. A ``success``/``failure``
    /``end`` event ends the episode (``truncated``; ``success`` also sets ``is_success``); ``rerecord``
    ends it and asks the caller to discard it. Per episode, ``info`` at the last step carries
    ``interventions`` (bursts) and ``intervention_steps``.
    """

    def __init__(self, env: gym.Env, device: Any):
        super().__init__(env)
        self.device = device
        self.episode = 0

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self.device.reset(self.env.unwrapped, self.episode)
        self.episode += 1
        self._obs, self._bursts, self._steps, self._in_burst = obs, 0, 0, False
        return obs, info

    def step(self, action: Any):
        cmd = self.device.command(self._obs, np.asarray(action, dtype=np.float32))
        if cmd.takeover:
            executed = np.asarray(cmd.action, dtype=np.float32)
            if not self._in_burst:
                self._bursts += 1
            self._steps += 1
        else:
            executed = np.asarray(action, dtype=np.float32)
        self._in_burst = cmd.takeover
        obs, reward, terminated, truncated, info = self.env.step(executed)
        info = dict(info)
        info.update(
            executed_action=executed,
            is_intervention=bool(cmd.takeover),
            intervention_id=self._bursts - 1 if cmd.takeover else -1,
            teleop_events=sorted(cmd.events),
            rerecord=RERECORD in cmd.events,
        )
        if SUCCESS in cmd.events:
            info["is_success"] = True
        if cmd.events & {SUCCESS, FAILURE, END, RERECORD} and not terminated:
            truncated = True
        if terminated or truncated:
            info.update(interventions=self._bursts, intervention_steps=self._steps)
        self._obs = obs
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        self.device.close()
        super().close()
