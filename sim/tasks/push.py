"""Push: slide a cube over the table onto a goal marker with the closed gripper.

State (34) = proprio (18) + cube pos (3) + cube quat (4) + cube pos - tcp pos (3) + goal pos (3)
+ goal pos - cube pos (3).
Success: cube centre within ``success_dist`` (0.04 m, in x-y) of the goal.
Dense reward (when not successful): 0.3 (1 - tanh(10 d_reach)) + 0.7 (1 - tanh(10 d_goal)), with
d_reach the tcp-cube and d_goal the cube-goal x-y distance (m).
"""

from __future__ import annotations

import numpy as np

from robot_rl.sim.base import ManipulationEnv
from robot_rl.sim.expert import move_to

OBJECTS = ("cube", "block", "box")
TEMPLATES = (
    "push the {c} {o} onto the target",
    "slide the {c} {o} to the marker",
    "push the {c} {o} to the circle on the table",
)


class PushEnv(ManipulationEnv):
    scene = "push.xml"
    default_horizon = 100
    object_geoms = ("object",)
    success_dist = 0.04
    xy_low = np.array([0.42, -0.12])
    xy_high = np.array([0.58, 0.12])

    def _setup_task(self) -> None:
        self._obj_qadr = int(self.model.jnt_qposadr[self.model.joint("object").id])
        self._obj_geom = self.model.geom("object").id
        self._goal_site = self.model.site("goal").id
        self.goal = np.zeros(3)

    def _task_obs_dim(self) -> int:
        return 16

    def _half_size(self) -> float:
        return float(self.model.geom_size[self._obj_geom, 2])

    def _reset_task(self) -> None:
        rng = self.np_random
        xy = rng.uniform(self.xy_low, self.xy_high)
        yaw = rng.uniform(-0.3, 0.3)
        adr = self._obj_qadr
        self.data.qpos[adr : adr + 3] = (xy[0], xy[1], self._half_size())
        self.data.qpos[adr + 3 : adr + 7] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
        # goal 0.10-0.18 m away in a random direction, kept on the reachable part of the table
        for _ in range(100):
            ang = rng.uniform(-np.pi, np.pi)
            goal = xy + rng.uniform(0.10, 0.18) * np.array([np.cos(ang), np.sin(ang)])
            if 0.38 <= goal[0] <= 0.68 and abs(goal[1]) <= 0.22:
                break
        self.goal[:] = (goal[0], goal[1], 0.0)
        self.model.site_pos[self._goal_site] = (goal[0], goal[1], 0.0005)
        colour = self._pick_colour()
        self._set_colour(self._obj_geom, colour)
        obj = OBJECTS[int(rng.integers(len(OBJECTS)))]
        self.task_text = TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(c=colour, o=obj)

    def _task_obs(self, out: np.ndarray) -> None:
        p = self._object_pose_obs(out)
        out[7:10] = p - self.arm.tcp_pos
        out[10:13] = self.goal
        out[13:16] = self.goal - p

    def _goal_dist(self) -> float:
        return float(np.linalg.norm((self.goal - self._obj_pos())[:2]))

    def _is_success(self) -> bool:
        return self._goal_dist() < self.success_dist

    def _dense_reward(self) -> float:
        d_reach = float(np.linalg.norm(self._obj_pos() - self.arm.tcp_pos))
        return 0.3 * (1.0 - np.tanh(10.0 * d_reach)) + 0.7 * (1.0 - np.tanh(10.0 * self._goal_dist()))

    def expert_action(self, noise: float = 0.0, hesitation: float = 0.0) -> np.ndarray:
        """Phases: 0 rise and go above the pre-push point -> 1 descend behind the cube -> 2 push.

        The pre-push point lies on the goal-cube line, behind the cube; if the tcp drifts more than
        2 cm off that line while pushing, the expert lifts and repositions (back to phase 0).
        """
        tcp, obj = self.arm.tcp_pos, self._obj_pos()
        half = self._half_size()
        to_goal = (self.goal - obj)[:2]
        dist = float(np.linalg.norm(to_goal))
        u = to_goal / max(dist, 1e-6)
        z_push = half + 0.002
        pre = np.array([*(obj[:2] - u * (half + 0.035)), z_push])
        # lateral offset of the tcp from the cube-goal line, and progress along it
        rel = tcp[:2] - obj[:2]
        lateral = abs(rel[0] * u[1] - rel[1] * u[0])
        along = float(rel @ u)
        if dist < 0.5 * self.success_dist:
            return self._expert_gate(move_to(self, tcp.copy(), 1.0), noise, hesitation)
        if self._expert_phase == 2 and (lateral > 0.02 or along > -half):
            self._expert_phase = 0
        if self._expert_phase == 0:
            target = np.array([pre[0], pre[1], max(tcp[2], half + 0.08)]) if tcp[2] > half + 0.06 else None
            if target is None:  # too low: go straight up first
                target = np.array([tcp[0], tcp[1], half + 0.09])
            elif np.linalg.norm((tcp - target)[:2]) < 0.01:
                self._expert_phase = 1
        if self._expert_phase == 1:
            target = pre
            if np.linalg.norm((tcp - pre)[:2]) > 0.02:
                self._expert_phase, target = 0, np.array([tcp[0], tcp[1], half + 0.09])
            elif abs(tcp[2] - pre[2]) < 0.01:
                self._expert_phase = 2
        if self._expert_phase == 2:
            # aim at the point behind the goal, correcting the lateral offset
            aim = self.goal[:2] - u * (half + 0.01)
            target = np.array([*aim, z_push])
            step = target - tcp
            n = np.linalg.norm(step[:2])
            if n > 0.02:
                step[:2] *= 0.02 / n
            target = tcp + step
        return self._expert_gate(move_to(self, target, 1.0), noise, hesitation)
