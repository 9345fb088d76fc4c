"""Reach: move the tool centre point to a coloured goal marker.

State (24) = proprio (18) + goal pos (3) + goal pos - tcp pos (3).
Success: tcp within ``success_dist`` (0.03 m) of the goal.
Dense reward (when not successful): 1 - tanh(10 d), d = tcp-goal distance (m).
"""

from __future__ import annotations

import numpy as np

from robot_rl.sim.base import COLOURS, ManipulationEnv
from robot_rl.sim.expert import move_to

TEMPLATES = (
    "move the gripper to the {c} marker",
    "reach the {c} target",
    "touch the {c} dot with the gripper",
    "bring the hand to the {c} sphere",
)


class ReachEnv(ManipulationEnv):
    scene = "reach.xml"
    default_horizon = 50
    success_dist = 0.03
    goal_low = np.array([0.35, -0.25, 0.05])
    goal_high = np.array([0.70, 0.25, 0.40])

    def _setup_task(self) -> None:
        self._goal_site = self.model.site("goal").id
        self.goal = np.zeros(3)

    def _task_obs_dim(self) -> int:
        return 6

    def _reset_task(self) -> None:
        rng = self.np_random
        self.goal[:] = rng.uniform(self.goal_low, self.goal_high)
        self.model.site_pos[self._goal_site] = self.goal
        colour = self._pick_colour()
        self.model.site_rgba[self._goal_site] = (*COLOURS[colour], 0.7)
        self.task_text = TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(c=colour)

    def _task_obs(self, out: np.ndarray) -> None:
        out[0:3] = self.goal
        out[3:6] = self.goal - self.arm.tcp_pos

    def _is_success(self) -> bool:
        return bool(np.linalg.norm(self.goal - self.arm.tcp_pos) < self.success_dist)

    def _dense_reward(self) -> float:
        return float(1.0 - np.tanh(10.0 * np.linalg.norm(self.goal - self.arm.tcp_pos)))

    def expert_action(self, noise: float = 0.0, hesitation: float = 0.0) -> np.ndarray:
        """Single phase: move straight to the goal with the gripper open."""
        return self._expert_gate(move_to(self, self.goal, -1.0), noise, hesitation)
