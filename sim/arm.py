"""The arm7 robot: joint constants, model ids and damped-least-squares differential IK.

Frames and units: world frame with z up, the arm base at the origin on the table top (z = 0);
positions in metres, angles in radians. The tool centre point (site ``tcp``) lies between the finger
pads; its nominal orientation points the gripper straight down (x_tcp = +x, z_tcp = -z).
"""

from __future__ import annotations

import mujoco
import numpy as np

ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("finger_left", "finger_right")
# published Panda limits (rad, rad/s)
Q_LOW = np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973])
Q_HIGH = np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973])
QD_MAX = np.array([2.1750, 2.1750, 2.1750, 2.1750, 2.6100, 2.6100, 2.6100])
FINGER_MAX = 0.04  # opening of one finger (m); the gripper opens to 2 * FINGER_MAX
# Panda "ready" pose, used as the null-space posture of the IK
Q_READY = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
# gripper pointing down: columns are the tcp axes in world coordinates
R_DOWN = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
LIMIT_MARGIN = 0.02  # rad kept away from the joint limits by the controllers


class Arm:
    """Ids and buffers for the arm7 robot inside a loaded scene (one per env)."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        self.model, self.data = model, data
        jids = [model.joint(n).id for n in ARM_JOINTS]
        self.qadr = np.array([model.jnt_qposadr[j] for j in jids])
        self.dadr = np.array([model.jnt_dofadr[j] for j in jids])
        # slices are faster than fancy indexing; the arm joints are contiguous in arm7.xml
        assert np.all(np.diff(self.qadr) == 1) and np.all(np.diff(self.dadr) == 1)
        self.qs = slice(int(self.qadr[0]), int(self.qadr[0]) + 7)
        self.ds = slice(int(self.dadr[0]), int(self.dadr[0]) + 7)
        self.finger_qadr = np.array([model.jnt_qposadr[model.joint(n).id] for n in FINGER_JOINTS])
        self.finger_dadr = np.array([model.jnt_dofadr[model.joint(n).id] for n in FINGER_JOINTS])
        self.act_arm = np.array([model.actuator(f"act_{n}").id for n in ARM_JOINTS])
        self.act_gripper = model.actuator("act_gripper").id
        assert np.all(self.act_arm == np.arange(7)) and self.act_gripper == 7
        self.tcp = model.site("tcp").id
        self.hand_body = model.body("hand").id
        self.q_low = Q_LOW + LIMIT_MARGIN
        self.q_high = Q_HIGH - LIMIT_MARGIN
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        self._jac = np.zeros((6, 7))
        self._err = np.zeros(6)
        self._jjt = np.zeros((6, 6))
        self._y = np.zeros(6)

    # --- state -----------------------------------------------------------------------------------
    @property
    def q(self) -> np.ndarray:
        return self.data.qpos[self.qs]

    @property
    def qd(self) -> np.ndarray:
        return self.data.qvel[self.ds]

    @property
    def tcp_pos(self) -> np.ndarray:
        return self.data.site_xpos[self.tcp]

    @property
    def tcp_mat(self) -> np.ndarray:
        return self.data.site_xmat[self.tcp].reshape(3, 3)

    def gripper_opening(self) -> float:
        """Distance between the finger pads (m), 0 (closed) .. 0.08 (open)."""
        qp = self.data.qpos
        return float(qp[self.finger_qadr[0]] + qp[self.finger_qadr[1]])

    # --- differential IK -------------------------------------------------------------------------
    def ik_step(
        self,
        target_pos: np.ndarray,
        target_mat: np.ndarray = R_DOWN,
        damping: float = 0.05,
        rot_weight: float = 0.5,
        null_gain: float = 0.1,
    ) -> np.ndarray:
        """One damped-least-squares step toward a tcp pose; returns the joint increment (rad).

        dq = J^T (J J^T + damping^2 I)^-1 e  +  (I - J^+ J) null_gain (Q_READY - q), where e stacks the
        position error (m) and the weighted orientation error (rad). Needs fresh kinematics
        (mj_kinematics + mj_comPos) in ``data``.
        """
        m, d = self.model, self.data
        mujoco.mj_jacSite(m, d, self._jacp, self._jacr, self.tcp)
        jac = self._jac
        jac[:3] = self._jacp[:, self.ds]
        jac[3:] = self._jacr[:, self.ds] * rot_weight
        err = self._err
        err[:3] = target_pos - d.site_xpos[self.tcp]
        cur = d.site_xmat[self.tcp].reshape(3, 3)
        # orientation error (axis * angle for small angles) = 0.5 * sum_i cur_i x target_i, computed as
        # 0.5 * vee(T C^T - C T^T) with C = cur and T = target_mat (cheaper than three np.cross calls)
        mt = target_mat @ cur.T
        err[3] = 0.5 * rot_weight * (mt[2, 1] - mt[1, 2])
        err[4] = 0.5 * rot_weight * (mt[0, 2] - mt[2, 0])
        err[5] = 0.5 * rot_weight * (mt[1, 0] - mt[0, 1])
        # (J J^T + l^2 I) y = e by Cholesky in MuJoCo's own routines (no LAPACK/BLAS threading overhead)
        jjt = self._jjt
        np.matmul(jac, jac.T, out=jjt)
        jjt.flat[::7] += damping * damping
        mujoco.mju_cholFactor(jjt, 0.0)
        mujoco.mju_cholSolve(self._y, jjt, err)
        dq = jac.T @ self._y
        if null_gain:
            # null-space posture term (I - J^+ J) z = z - J^T (J J^T + l^2 I)^-1 J z
            z = null_gain * (Q_READY - d.qpos[self.qs])
            mujoco.mju_cholSolve(self._y, jjt, jac @ z)
            dq += z - jac.T @ self._y
        return dq

    def solve_ik(
        self, target_pos: np.ndarray, q0: np.ndarray, iters: int = 200, tol: float = 1e-4
    ) -> np.ndarray:
        """Kinematics-only IK (no physics step) from ``q0``; used to compute the start posture.

        Overwrites the arm qpos in ``data``; the caller restores or resets the state afterwards.
        """
        m, d = self.model, self.data
        d.qpos[self.qs] = q0
        for _ in range(iters):
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            dq = self.ik_step(target_pos, damping=0.02)
            d.qpos[self.qs] = np.clip(d.qpos[self.qs] + dq, self.q_low, self.q_high)
            if np.linalg.norm(dq) < tol:
                break
        mujoco.mj_kinematics(m, d)
        return d.qpos[self.qs].copy()
