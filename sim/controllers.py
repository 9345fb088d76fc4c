"""Controllers that map a normalized action in [-1, 1] to position-servo targets of arm7.

``ee_delta`` (default): action = [dx, dy, dz, gripper], or with ``yaw=True`` (env kwarg
``ee_yaw=True``) [dx, dy, dz, dyaw, gripper]: dyaw is scaled by ``max_dyaw`` (0.2 rad per control
step) and turns the hand about the world z axis, the target yaw kept within ±π/2 of the start
(gripper pointing down throughout). The position part is scaled by
``max_delta`` (0.04 m per control step, i.e. 0.8 m/s at 20 Hz) and added to a persistent tcp target
that is clamped to the workspace box and kept within ``max_lead`` (0.05 m) of the measured tcp (no
wind-up when blocked). Damped-least-squares IK turns the tcp error (and the error to the fixed
gripper-down orientation) into a joint increment, clipped to the Panda velocity limits over one
control period and to the joint limits; the result is the target of the joint position servos.

``joint_pos``: action = [dq1..dq7, gripper]; the first seven are scaled by ``max_dq`` (0.1 rad per
step, further limited by the Panda velocity limits) and added to a persistent joint target.

Gripper (both): -1 = fully open (8 cm between the pads), +1 = closed; values in between map linearly
to the finger target.
"""

from __future__ import annotations

import numpy as np

from robot_rl.sim.arm import FINGER_MAX, QD_MAX, R_DOWN, Arm

# tcp workspace box (m, world frame): x, y, z lower and upper bounds
WORKSPACE_LOW = np.array([0.25, -0.35, 0.01])
WORKSPACE_HIGH = np.array([0.80, 0.35, 0.50])


def gripper_target(a: float) -> float:
    """Finger position target (m) for a normalized gripper command (-1 open, +1 closed)."""
    return (1.0 - a) * 0.5 * FINGER_MAX


class EEDeltaController:
    """Cartesian delta control of the tool centre point through DLS differential IK."""

    name = "ee_delta"
    YAW_LIMIT = np.pi / 2  # rad, either side of the start orientation

    def __init__(
        self,
        arm: Arm,
        control_dt: float,
        max_delta: float = 0.04,
        max_lead: float = 0.05,
        yaw: bool = False,
        max_dyaw: float = 0.2,
    ) -> None:
        self.arm = arm
        self.max_delta = max_delta
        self.max_lead = max_lead
        self.dq_max = QD_MAX * control_dt
        self.target = np.zeros(3)
        self.yaw_enabled = yaw
        self.max_dyaw = max_dyaw
        self.action_dim = 5 if yaw else 4
        self.yaw = 0.0  # target yaw of the hand about world z (rad), 0 = the start orientation
        self._target_mat = R_DOWN.copy()

    def reset(self) -> None:
        self.target[:] = self.arm.tcp_pos
        self.yaw = 0.0
        self._target_mat[:] = R_DOWN

    def apply(self, action: np.ndarray, ctrl: np.ndarray) -> None:
        arm = self.arm
        cur = arm.tcp_pos
        t = self.target
        t += action[:3] * self.max_delta
        np.clip(t, cur - self.max_lead, cur + self.max_lead, out=t)
        np.clip(t, WORKSPACE_LOW, WORKSPACE_HIGH, out=t)
        if self.yaw_enabled:
            self.yaw = float(np.clip(self.yaw + action[3] * self.max_dyaw, -self.YAW_LIMIT, self.YAW_LIMIT))
            c, s = np.cos(self.yaw), np.sin(self.yaw)
            self._target_mat[:] = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ R_DOWN
        dq = np.clip(arm.ik_step(t, self._target_mat), -self.dq_max, self.dq_max)
        ctrl[:7] = np.clip(arm.q + dq, arm.q_low, arm.q_high)
        ctrl[7] = gripper_target(action[-1])


class JointPosController:
    """Joint-position delta control: normalized increments of a persistent joint target."""

    name = "joint_pos"
    action_dim = 8

    def __init__(self, arm: Arm, control_dt: float, max_dq: float = 0.1, max_lead: float = 0.2) -> None:
        self.arm = arm
        self.dq_max = np.minimum(QD_MAX * control_dt, max_dq)
        self.max_lead = max_lead
        self.target = np.zeros(7)

    def reset(self) -> None:
        self.target[:] = self.arm.q

    def apply(self, action: np.ndarray, ctrl: np.ndarray) -> None:
        arm = self.arm
        t = self.target
        t += action[:7] * self.dq_max
        q = arm.q
        np.clip(t, q - self.max_lead, q + self.max_lead, out=t)
        np.clip(t, arm.q_low, arm.q_high, out=t)
        ctrl[:7] = t
        ctrl[7] = gripper_target(action[7])


CONTROLLERS = {"ee_delta": EEDeltaController, "joint_pos": JointPosController}
