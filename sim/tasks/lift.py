"""Lift: grasp a cube lying on the table and raise it.

State (28) = proprio (18) + cube pos (3) + cube quat (4, w x y z) + cube pos - tcp pos (3).
Success: cube centre at least ``lift_height`` (0.08 m) above its resting height.
Dense reward (when not successful): 0.2 (1 - tanh(10 d_reach)) + 0.3 grasped + 0.5 clip(h / 0.08, 0, 1),
with d_reach the tcp-cube distance, ``grasped`` = cube between the pads with the gripper closed on it,
h = height gained.
"""

from __future__ import annotations

import numpy as np

from robot_rl.sim.base import ManipulationEnv
from robot_rl.sim.expert import move_to

OBJECTS = ("cube", "block", "box")
TEMPLATES = (
    "lift the {c} {o}",
    "pick up the {c} {o} and raise it",
    "grasp the {c} {o} and lift it off the table",
    "raise the {c} {o} above the table",
)


class LiftEnv(ManipulationEnv):
    scene = "lift.xml"
    default_horizon = 100
    object_geoms = ("object",)
    lift_height = 0.08
    xy_low = np.array([0.4, -0.15])
    xy_high = np.array([0.6, 0.15])

    def _setup_task(self) -> None:
        self._obj_qadr = int(self.model.jnt_qposadr[self.model.joint("object").id])
        self._obj_geom = self.model.geom("object").id

    def _task_obs_dim(self) -> int:
        return 10

    def _half_size(self) -> float:
        return float(self.model.geom_size[self._obj_geom, 2])

    def _reset_task(self) -> None:
        rng = self.np_random
        xy = rng.uniform(self.xy_low, self.xy_high)
        yaw = rng.uniform(-0.3, 0.3)
        adr = self._obj_qadr
        self._rest_z = self._half_size()
        self.data.qpos[adr : adr + 3] = (xy[0], xy[1], self._rest_z)
        self.data.qpos[adr + 3 : adr + 7] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
        colour = self._pick_colour()
        self._set_colour(self._obj_geom, colour)
        obj = OBJECTS[int(rng.integers(len(OBJECTS)))]
        self.task_text = TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(c=colour, o=obj)

    def _task_obs(self, out: np.ndarray) -> None:
        p = self._object_pose_obs(out)
        out[7:10] = p - self.arm.tcp_pos

    def _is_success(self) -> bool:
        return bool(self._obj_pos()[2] >= self._rest_z + self.lift_height)

    def rubric_score(self) -> int:
        """RoboReward's 1-5 rubric from the privileged state, for the reward-model stand-in (ALGORITHMS
        §8(g)): 5 lifted (success), 4 grasped and half-way up, 3 grasped, 2 tcp within 5 cm of the
        cube, 1 otherwise."""
        if self._is_success():
            return 5
        if self._grasped():
            return 4 if self._obj_pos()[2] >= self._rest_z + 0.5 * self.lift_height else 3
        return 2 if np.linalg.norm(self._obj_pos() - self.arm.tcp_pos) < 0.05 else 1

    def _grasped(self) -> bool:
        rel = self._obj_pos() - self.arm.tcp_pos
        opening = self.arm.gripper_opening()
        return bool(np.abs(rel).max() < 0.02 and opening < 2 * self._half_size() + 0.004)

    def _dense_reward(self) -> float:
        d = float(np.linalg.norm(self._obj_pos() - self.arm.tcp_pos))
        h = float(np.clip((self._obj_pos()[2] - self._rest_z) / self.lift_height, 0.0, 1.0))
        return 0.2 * (1.0 - np.tanh(10.0 * d)) + 0.3 * float(self._grasped()) + 0.5 * h

    def expert_action(self, noise: float = 0.0, hesitation: float = 0.0) -> np.ndarray:
        """Phases: 0 above the cube (open) -> 1 descend -> 2 close (fixed count) -> 3 lift."""
        tcp, obj = self.arm.tcp_pos, self._obj_pos()
        half = self._half_size()
        above = obj + np.array([0.0, 0.0, 0.1])
        grip = -1.0
        if self._expert_phase == 0:
            target = above
            if np.linalg.norm((tcp - above)[:2]) < 0.01 and abs(tcp[2] - above[2]) < 0.03:
                self._expert_phase = 1
        if self._expert_phase == 1:
            target = obj + np.array([0.0, 0.0, 0.2 * half])
            if np.linalg.norm((tcp - obj)[:2]) > 0.03:  # the cube moved away: start over
                self._expert_phase, target = 0, above
            elif abs(tcp[2] - target[2]) < 0.006:
                self._expert_phase = 2
        if self._expert_phase == 2:
            target, grip = obj + np.array([0.0, 0.0, 0.2 * half]), 1.0
            self._expert_count += 1
            if self._expert_count >= 6:
                self._expert_phase = 3
        if self._expert_phase == 3:
            grip = 1.0
            target = np.array([tcp[0], tcp[1], self._rest_z + self.lift_height + 0.06])
            if not self._grasped() and obj[2] < self._rest_z + 0.01:  # dropped: start over
                self._expert_phase, self._expert_count, grip = 0, 0, -1.0
        action = move_to(self, target, grip)
        return self._expert_gate(action, noise, hesitation)
