"""PointReach: a point mass that must reach a goal in 3-D — a fast, MuJoCo-free test task.

It obeys the same contract as the MuJoCo tasks (docs/sim.md): Dict observation with
``"state"``, normalized ``Box(-1, 1, (3,))`` action, ``info["is_success"]`` and ``info["task"]``,
sparse or dense reward, a scripted expert with a noise knob. It exists so the training machinery
(trainer, checkpoints, resume, bundles) is tested in seconds (the Brax "fast env" idea).

State (float32, 9): point position (3, m), point velocity (3, m/s), goal position (3, m).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

_ALLOWED = {
    "obs_mode": ("state",),
    "reward_type": ("sparse", "dense"),
    "randomization": ("none",),
    "control": ("ee_delta",),
    "render_mode": (None, "rgb_array"),
}


class PointReachEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}  # noqa: RUF012 (gymnasium API)

    MAX_STEP = 0.05  # m per control step at |action| = 1
    SUCCESS_RADIUS = 0.05  # m

    def __init__(
        self,
        obs_mode: str = "state",
        reward_type: str = "sparse",
        randomization: str = "none",
        control: str = "ee_delta",
        render_mode: str | None = None,
        horizon: int = 40,
        terminate_on_success: bool = False,
    ):
        for name, value in (
            ("obs_mode", obs_mode),
            ("reward_type", reward_type),
            ("randomization", randomization),
            ("control", control),
            ("render_mode", render_mode),
        ):
            if value not in _ALLOWED[name]:
                raise ValueError(
                    f"{name}={value!r} is not supported by PointReach; allowed: {_ALLOWED[name]}"
                )
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.reward_type = reward_type
        self.render_mode = render_mode
        self.horizon = horizon
        self.terminate_on_success = terminate_on_success
        self.observation_space = gym.spaces.Dict({"state": gym.spaces.Box(-np.inf, np.inf, (9,), np.float32)})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self._pos = np.zeros(3)
        self._vel = np.zeros(3)
        self._goal = np.zeros(3)
        self._t = 0
        self._expert_rng = np.random.default_rng(0)
        self.task = "move the point to the goal"

    def _obs(self) -> dict[str, np.ndarray]:
        return {"state": np.concatenate([self._pos, self._vel, self._goal]).astype(np.float32)}

    def _success(self) -> bool:
        return bool(np.linalg.norm(self._pos - self._goal) < self.SUCCESS_RADIUS)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._expert_rng = np.random.default_rng(seed + 1)
        self._pos = self.np_random.uniform(-0.3, 0.3, 3)
        self._goal = self.np_random.uniform(-0.3, 0.3, 3)
        self._vel = np.zeros(3)
        self._t = 0
        return self._obs(), {"is_success": self._success(), "task": self.task}

    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (3,):
            raise ValueError(f"action must have shape (3,), got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError("action contains NaN or inf")
        action = np.clip(action, -1.0, 1.0)
        previous = self._pos.copy()
        self._pos = np.clip(self._pos + self.MAX_STEP * action, -0.5, 0.5)
        self._vel = (self._pos - previous) * self.metadata["render_fps"]
        self._t += 1
        success = self._success()
        if self.reward_type == "sparse":
            reward = float(success)
        else:
            reward = float(-np.linalg.norm(self._pos - self._goal) + success)
        terminated = success and self.terminate_on_success
        truncated = self._t >= self.horizon and not terminated
        return self._obs(), reward, terminated, truncated, {"is_success": success, "task": self.task}

    def task_progress(self) -> float:
        """Minus the distance to the goal (m): the simulated human's progress signal."""
        return float(-np.linalg.norm(self._pos - self._goal))

    def expert_action(self, noise: float = 0.0, hesitation: float = 0.0) -> np.ndarray:
        """Move straight to the goal; ``noise`` is the std of added Gaussian noise, ``hesitation``
        the per-step probability of a zero action."""
        if hesitation > 0 and self._expert_rng.random() < hesitation:
            return np.zeros(3, dtype=np.float32)
        action = np.clip((self._goal - self._pos) / self.MAX_STEP, -1.0, 1.0)
        if noise > 0:
            action = action + self._expert_rng.normal(0.0, noise, 3)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        image = np.full((64, 64, 3), 255, dtype=np.uint8)
        for point, colour in ((self._goal, (40, 180, 40)), (self._pos, (200, 40, 40))):
            u, v = ((point[:2] + 0.5) * 63).astype(int)
            image[max(v - 2, 0) : v + 3, max(u - 2, 0) : u + 3] = colour
        return image
