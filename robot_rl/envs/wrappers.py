"""Environment wrappers shared by algorithms.

:class:`BaseActionWrapper` puts a frozen base policy *behind* the environment (ResFiT, ALGORITHMS.md
§1(b), §11.2): every observation gains ``obs["base_action"]``, the base's next action for that
observation, so the residual actor sees ``(s, a_b)`` and the replay buffer stores ``a_b`` with
``s`` and ``a_b'`` with ``s'`` for free. The base's chunk queue is reset at every ``reset()`` —
per environment — so chunks never leak across episodes (amazon-far/resfit issue #5).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

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
