"""PegInsert: insert a grasped square peg into a square hole (precision insertion).

The peg (2.0 x 2.0 x 10 cm, nominal) starts grasped between the closed fingers, its bottom 7 cm below
the tcp; the hole (2.6 x 2.6 cm, 4 cm deep, i.e. 3 mm clearance per side) sits in a fixture at a
random place on the table. The hole is aligned with the gripper yaw, so no rotation is needed.
State (31) = proprio (18) + peg pos (3) + peg quat (4) + hole top-centre pos (3) + hole - peg bottom (3).
Success: peg bottom at least ``depth`` (0.02 m) below the hole top and within 1 cm of the hole axis.
Dense reward (when not successful): 0.5 (1 - tanh(20 d_xy)) + 0.5 clip(depth_reached / 0.02, 0, 1),
with d_xy the peg-bottom to hole-axis distance (m).
"""

from __future__ import annotations

import mujoco
import numpy as np

from robot_rl.sim.base import ManipulationEnv
from robot_rl.sim.expert import move_to

TEMPLATES = (
    "insert the {c} peg into the hole",
    "put the {c} peg into the square hole",
    "fit the {c} peg into the fixture",
    "push the {c} peg down into the slot",
)
FLIP_X = np.diag([1.0, -1.0, -1.0])  # tcp frame -> peg frame (peg z axis up when the gripper points down)


class PegInsertEnv(ManipulationEnv):
    scene = "peg_insert.xml"
    default_horizon = 100
    object_geoms = ("object",)
    depth = 0.02
    xy_tol = 0.01
    grasp_offset = 0.02  # peg centre below the tcp (m)
    hole_low = np.array([0.45, -0.12])
    hole_high = np.array([0.60, 0.12])

    def _setup_task(self) -> None:
        m = self.model
        self._obj_qadr = int(m.jnt_qposadr[m.joint("object").id])
        self._obj_geom = m.geom("object").id
        self._fixture = m.body("fixture").id
        self._hole_site = m.site("hole").id
        self._bottom_site = m.site("peg_bottom").id
        self._nominal_bottom = m.site_pos[self._bottom_site].copy()

    def _task_obs_dim(self) -> int:
        return 13

    def _initial_gripper(self) -> float:
        return 1.0  # closed on the peg

    def _reset_task(self) -> None:
        rng, m, d = self.np_random, self.model, self.data
        hx, hy = rng.uniform(self.hole_low, self.hole_high)
        m.body_pos[self._fixture] = (hx, hy, 0.0)
        half_w, half_len = m.geom_size[self._obj_geom, 0], m.geom_size[self._obj_geom, 2]
        m.site_pos[self._bottom_site] = (0.0, 0.0, -half_len)
        # the peg hangs between the pads: its frame is the tcp frame flipped so that +z points up
        rot = self.arm.tcp_mat @ FLIP_X
        quat = np.empty(4)
        mujoco.mju_mat2Quat(quat, rot.ravel())
        adr = self._obj_qadr
        d.qpos[adr : adr + 3] = self.arm.tcp_pos - rot[:, 2] * self.grasp_offset
        d.qpos[adr + 3 : adr + 7] = quat
        d.qpos[self.arm.finger_qadr] = half_w
        d.ctrl[7] = 0.0
        colour = self._pick_colour()
        self._set_colour(self._obj_geom, colour)
        self.task_text = TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(c=colour)

    def _hole(self) -> np.ndarray:
        return self.data.site_xpos[self._hole_site]

    def _bottom(self) -> np.ndarray:
        return self.data.site_xpos[self._bottom_site]

    def _task_obs(self, out: np.ndarray) -> None:
        self._object_pose_obs(out)
        out[7:10] = self._hole()
        out[10:13] = self._hole() - self._bottom()

    def _xy_err(self) -> float:
        return float(np.linalg.norm((self._hole() - self._bottom())[:2]))

    def _is_success(self) -> bool:
        return bool(self._bottom()[2] <= self._hole()[2] - self.depth and self._xy_err() < self.xy_tol)

    def _dense_reward(self) -> float:
        reached = float(np.clip((self._hole()[2] - self._bottom()[2]) / self.depth, 0.0, 1.0))
        return 0.5 * (1.0 - np.tanh(20.0 * self._xy_err())) + 0.5 * reached

    def expert_action(self, noise: float = 0.0, hesitation: float = 0.0) -> np.ndarray:
        """Phases: 0 align the peg bottom 3 cm above the hole -> 1 descend with x-y correction.

        Falls back to phase 0 if the peg drifts more than 4 mm off the hole axis above the hole.
        """
        tcp, hole, bottom = self.arm.tcp_pos, self._hole(), self._bottom()
        err = hole - bottom
        xy = float(np.linalg.norm(err[:2]))
        if self._expert_phase == 0:
            target = tcp + np.array([err[0], err[1], err[2] + 0.03])
            if xy < 0.002 and abs(err[2] + 0.03) < 0.01:
                self._expert_phase = 1
        if self._expert_phase == 1:
            if xy > 0.004 and bottom[2] > hole[2]:
                self._expert_phase = 0
                target = tcp + np.array([err[0], err[1], err[2] + 0.03])
            else:
                dz = max(err[2] - self.depth - 0.01, -0.02)
                target = tcp + np.array([err[0], err[1], dz])
        return self._expert_gate(move_to(self, target, 1.0), noise, hesitation)
