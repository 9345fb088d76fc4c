"""Base class of the built-in MuJoCo manipulation tasks (contract: docs/sim.md, ARCHITECTURE §3.1).

A task subclass sets ``scene`` (an XML file under ``robot_rl.assets/scenes``), ``default_horizon``,
and implements ``_setup_task``, ``_reset_task``, ``_task_obs``, ``_is_success``, ``_dense_reward``
and ``expert_action``. Everything else (kwargs validation, control, stepping, randomization,
rendering, the NaN policy) lives here.
"""

from __future__ import annotations

import abc
import importlib
import importlib.util
import os
import sys
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must precede `import mujoco`

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

import robot_rl.assets
from robot_rl.sim import randomization as dr
from robot_rl.sim.arm import FINGER_MAX, Q_READY, Arm
from robot_rl.sim.controllers import CONTROLLERS

ASSETS = Path(robot_rl.assets.__file__).parent
OBS_MODES = ("state", "pixels", "state+pixels")
REWARD_TYPES = ("sparse", "dense")
CAMERAS = ("front", "wrist")
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.1, 0.1),
    "green": (0.1, 0.7, 0.15),
    "blue": (0.1, 0.25, 0.9),
    "yellow": (0.92, 0.82, 0.1),
    "purple": (0.55, 0.15, 0.75),
    "orange": (0.95, 0.5, 0.05),
}


def _load_torch_compiler_before_gl() -> None:
    """Import ``torch._dynamo`` (and with it triton) before the first GL context, when torch is
    installed. torch imports triton lazily, at the first optimizer; once an EGL/Mesa context exists
    in the process that import segfaults (found when rendering rollouts before training a model)."""
    if importlib.util.find_spec("torch") is not None:
        importlib.import_module("torch._dynamo")


START_TCP = np.array([0.45, 0.0, 0.25])  # nominal start of the tool centre point (m)
_WARNINGS = (
    int(mujoco.mjtWarning.mjWARN_BADQPOS),
    int(mujoco.mjtWarning.mjWARN_BADQVEL),
    int(mujoco.mjtWarning.mjWARN_BADQACC),
)
_HOME_CACHE: dict[str, np.ndarray] = {}


class ManipulationEnv(gym.Env, abc.ABC):
    """arm7 on a table; subclasses define the objects, the goal, success and the expert."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20}
    scene: str = ""
    default_horizon: int = 100
    object_geoms: tuple[str, ...] = ()  # randomized in size/mass/colour
    start_joint_noise: float = 0.03  # rad, uniform noise on the start posture
    render_size: tuple[int, int] = (256, 256)  # (height, width) of render()

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "obs_mode": "state",
        "reward_type": "sparse",
        "randomization": "none",
        "control": "ee_delta",
        "ee_yaw": False,
        "render_mode": None,
        "horizon": None,
        "terminate_on_success": False,
        "image_size": 84,
        "cameras": None,
        "control_hz": 20.0,
        "n_substeps": None,
    }

    def __init__(self, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(self.DEFAULTS))
        if unknown:
            raise ValueError(
                f"{type(self).__name__}: unknown kwargs {unknown}; allowed: {sorted(self.DEFAULTS)}"
            )
        cfg = {**self.DEFAULTS, **kwargs}
        self._validate(cfg)
        self.obs_mode: str = cfg["obs_mode"]
        self.reward_type: str = cfg["reward_type"]
        self.control: str = cfg["control"]
        self.render_mode: str | None = cfg["render_mode"]
        self.horizon: int = int(cfg["horizon"] or self.default_horizon)
        self.terminate_on_success = bool(cfg["terminate_on_success"])
        self.image_size = int(cfg["image_size"])
        self.cameras: tuple[str, ...] = tuple(cfg["cameras"] or ("front",))
        self.control_hz = float(cfg["control_hz"])

        self.model = mujoco.MjModel.from_xml_path(str(ASSETS / "scenes" / self.scene))
        if cfg["n_substeps"] is not None:
            self.n_substeps = int(cfg["n_substeps"])
            self.model.opt.timestep = 1.0 / (self.control_hz * self.n_substeps)
        else:
            self.n_substeps = max(1, round(1.0 / (self.control_hz * self.model.opt.timestep)))
        if not 1e-4 <= self.model.opt.timestep <= 0.01:
            raise ValueError(f"physics timestep {self.model.opt.timestep:.5f} s outside [0.0001, 0.01]")
        self.data = mujoco.MjData(self.model)
        self.arm = Arm(self.model, self.data)
        yaw = {"yaw": True} if cfg["ee_yaw"] else {}
        self.controller = CONTROLLERS[self.control](self.arm, 1.0 / self.control_hz, **yaw)
        self._obj_geom_ids = [self.model.geom(n).id for n in self.object_geoms]
        self._obj_body_ids = [int(self.model.geom_bodyid[g]) for g in self._obj_geom_ids]
        self._setup_task()
        friction_geoms = [*self._obj_geom_ids, self.model.geom("table").id]
        self.randomizer = dr.Randomizer(
            self.model,
            dr.resolve_spec(cfg["randomization"]),
            self._obj_geom_ids,
            self._obj_body_ids,
            self.arm.ds,
            self.arm.act_arm,
            friction_geoms,
        )
        self.q_home = self._home_posture()

        n_state = 18 + self._task_obs_dim()
        obs_spaces: dict[str, spaces.Space] = {}
        if self.obs_mode != "pixels":
            obs_spaces["state"] = spaces.Box(-np.inf, np.inf, (n_state,), np.float32)
        if self.obs_mode != "state":
            for cam in self.cameras:
                obs_spaces[f"pixels/{cam}"] = spaces.Box(
                    0, 255, (self.image_size, self.image_size, 3), np.uint8
                )
        self.observation_space = spaces.Dict(obs_spaces)
        da = self.controller.action_dim
        self.action_space = spaces.Box(-1.0, 1.0, (da,), np.float32)

        self._state = np.zeros(n_state, dtype=np.float64)
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._action_queue: deque[np.ndarray] = deque()
        self._latency = 0
        self._obs_noise = 0.0
        self._dr_info: dict[str, float] = {}
        self._last_obs: dict[str, np.ndarray] | None = None
        self._unstable = False
        self._steps = 0
        self._warn_count = 0
        self.task_text = ""
        self._expert_rng = np.random.default_rng(0)
        self._expert_phase = 0
        self._expert_count = 0

    # --- validation ------------------------------------------------------------------------------
    def _validate(self, cfg: dict[str, Any]) -> None:
        def bad(key: str, allowed: Any) -> None:
            raise ValueError(f"{type(self).__name__}: invalid {key}={cfg[key]!r}; allowed: {allowed}")

        if cfg["obs_mode"] not in OBS_MODES:
            bad("obs_mode", OBS_MODES)
        if cfg["reward_type"] not in REWARD_TYPES:
            bad("reward_type", REWARD_TYPES)
        if cfg["control"] not in CONTROLLERS:
            bad("control", tuple(CONTROLLERS))
        if not isinstance(cfg["ee_yaw"], bool | np.bool_) or (cfg["ee_yaw"] and cfg["control"] != "ee_delta"):
            bad("ee_yaw", "True only with control='ee_delta', else False")
        if cfg["render_mode"] not in (None, *self.metadata["render_modes"]):
            bad("render_mode", (None, *self.metadata["render_modes"]))
        h = cfg["horizon"]
        if h is not None and (isinstance(h, bool) or not isinstance(h, int | np.integer) or h < 1):
            bad("horizon", "None or a positive int")
        if not isinstance(cfg["terminate_on_success"], bool | np.bool_):
            bad("terminate_on_success", (True, False))
        s = cfg["image_size"]
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or not 8 <= s <= 480:
            bad("image_size", "an int in [8, 480]")
        cams = cfg["cameras"]
        if cams is not None and (isinstance(cams, str) or not cams or any(c not in CAMERAS for c in cams)):
            bad("cameras", f"a non-empty sequence of {CAMERAS}")
        hz = cfg["control_hz"]
        if isinstance(hz, bool) or not isinstance(hz, int | float) or not 1 <= hz <= 500:
            bad("control_hz", "a number in [1, 500]")
        n = cfg["n_substeps"]
        if n is not None and (isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1):
            bad("n_substeps", "None or a positive int")
        r = cfg["randomization"]
        if not isinstance(r, str | Mapping):
            bad("randomization", f"{sorted(dr.PROFILES)} or a mapping")

    # --- subclass hooks --------------------------------------------------------------------------
    def _setup_task(self) -> None:
        """Look up task ids (called once in __init__)."""

    @abc.abstractmethod
    def _task_obs_dim(self) -> int:
        """Size of the task part of the state vector (objects, goal)."""

    @abc.abstractmethod
    def _reset_task(self) -> None:
        """Place objects/goal from self.np_random and set self.task_text."""

    @abc.abstractmethod
    def _task_obs(self, out: np.ndarray) -> None:
        """Write the task part of the state into ``out``."""

    @abc.abstractmethod
    def _is_success(self) -> bool:
        """Success from the true simulator state (task geometry)."""

    @abc.abstractmethod
    def _dense_reward(self) -> float:
        """Shaped reward for ``reward_type="dense"``."""

    def task_progress(self) -> float:
        """How far the task is along now (the shaped reward, higher is better); the simulated human's
        "no progress" signal, available whatever ``reward_type`` the env uses."""
        return float(self._dense_reward())

    @abc.abstractmethod
    def expert_action(self, noise: float = 0.0, hesitation: float = 0.0) -> np.ndarray:
        """The scripted expert's next normalized action (see robot_rl.sim.expert)."""

    def _initial_gripper(self) -> float:
        return -1.0  # open

    # --- helpers ---------------------------------------------------------------------------------
    def _home_posture(self) -> np.ndarray:
        """Joint posture with the tcp at START_TCP pointing down (IK solved once per process)."""
        if self.scene not in _HOME_CACHE:
            _HOME_CACHE[self.scene] = self.arm.solve_ik(START_TCP, Q_READY)
            mujoco.mj_resetData(self.model, self.data)
        return _HOME_CACHE[self.scene].copy()

    def _obj_pos(self) -> np.ndarray:
        """Position (m, world) of the task's free object (``self._obj_qadr``: its qpos address)."""
        return self.data.qpos[self._obj_qadr : self._obj_qadr + 3]

    def _object_pose_obs(self, out: np.ndarray) -> np.ndarray:
        """Write the object's position and quaternion (w, x, y, z) into ``out[0:7]``; return the position."""
        pose = self.data.qpos[self._obj_qadr : self._obj_qadr + 7]
        out[0:7] = pose
        return pose[:3]

    def _pick_colour(self) -> str:
        names = list(COLOURS)
        return names[int(self.np_random.integers(len(names)))]

    def _set_colour(self, geom: int, colour: str, alpha: float = 1.0) -> None:
        self.randomizer.set_nominal_rgba(geom, np.array([*COLOURS[colour], alpha]))

    def _forward_kinematics(self) -> None:
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)

    def set_object_pose(
        self, pos: np.ndarray, quat: np.ndarray | None = None, body: int | None = None
    ) -> None:
        """Place a free object (qpos of its free joint) and recompute kinematics; for tests and demos."""
        b = self._obj_body_ids[0] if body is None else body
        adr = self.model.jnt_qposadr[self.model.body_jntadr[b]]
        self.data.qpos[adr : adr + 3] = pos
        self.data.qpos[adr + 3 : adr + 7] = (1.0, 0.0, 0.0, 0.0) if quat is None else quat
        self.data.qvel[self.model.jnt_dofadr[self.model.body_jntadr[b]] :][:6] = 0.0
        mujoco.mj_forward(self.model, self.data)

    def _expert_gate(self, action: np.ndarray, noise: float, hesitation: float) -> np.ndarray:
        """Apply the expert knobs: hesitation zeroes the motion, noise is N(0, noise) on every dim."""
        rng = self._expert_rng
        if hesitation > 0 and rng.random() < hesitation:
            action[:-1] = 0.0
        if noise > 0:
            action = action + rng.normal(0.0, noise, action.shape)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    # --- gymnasium API ---------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        self._expert_rng = np.random.default_rng(int(rng.integers(2**63)))
        self._expert_phase, self._expert_count = 0, 0
        m, d = self.model, self.data
        params = dr.sample(self.randomizer.spec, rng)
        self._dr_info = self.randomizer.apply(params, rng)
        self._latency = int(params["latency_steps"])
        self._obs_noise = params["obs_noise"]
        mujoco.mj_resetData(m, d)
        q0 = self.q_home + rng.uniform(-self.start_joint_noise, self.start_joint_noise, 7)
        d.qpos[self.arm.qs] = np.clip(q0, self.arm.q_low, self.arm.q_high)
        g0 = self._initial_gripper()
        finger = (1.0 - g0) * 0.5 * FINGER_MAX
        d.qpos[self.arm.finger_qadr] = finger
        d.ctrl[:7] = d.qpos[self.arm.qs]
        d.ctrl[7] = finger
        self._forward_kinematics()
        self._reset_task()
        self.randomizer.apply_colours(params, rng)
        mujoco.mj_forward(m, d)
        self.controller.reset()
        neutral = np.zeros(self.action_space.shape, dtype=np.float64)
        neutral[-1] = g0
        self._action_queue = deque(neutral.copy() for _ in range(self._latency))
        self._steps = 0
        self._unstable = False
        self._warn_count = sum(d.warning[w].number for w in _WARNINGS)
        obs = self._get_obs()
        self._last_obs = obs
        info = {
            "is_success": bool(self._is_success()),
            "task": self.task_text,
            "randomization": dict(self._dr_info),
        }
        return obs, info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != self.action_space.shape:
            raise ValueError(f"action shape {a.shape} != {self.action_space.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"action contains NaN or inf: {a}")
        a = np.clip(a, -1.0, 1.0)
        if self._unstable:  # the episode already ended on a simulation blow-up; reset() is required
            assert self._last_obs is not None
            info = {"is_success": False, "task": self.task_text, "sim_unstable": True}
            return self._last_obs, 0.0, False, True, info
        if self._latency:
            self._action_queue.append(a)
            a = self._action_queue.popleft()
        m, d = self.model, self.data
        self.controller.apply(a, d.ctrl)
        mujoco.mj_step(m, d, nstep=self.n_substeps)
        self._steps += 1
        warn = d.warning
        n_warn = warn[_WARNINGS[0]].number + warn[_WARNINGS[1]].number + warn[_WARNINGS[2]].number
        if n_warn != self._warn_count or not np.isfinite(d.qpos).all() or not np.isfinite(d.qvel).all():
            self._warn_count = n_warn
            self._unstable = True
            assert self._last_obs is not None
            info = {"is_success": False, "task": self.task_text, "sim_unstable": True}
            return self._last_obs, 0.0, False, True, info
        self._forward_kinematics()
        success = bool(self._is_success())
        if self.reward_type == "sparse":
            reward = 1.0 if success else 0.0
        else:
            reward = 1.0 if success else float(self._dense_reward())
        obs = self._get_obs()
        self._last_obs = obs
        terminated = success and self.terminate_on_success
        truncated = self._steps >= self.horizon
        return obs, reward, terminated, truncated, {"is_success": success, "task": self.task_text}

    # --- observations ----------------------------------------------------------------------------
    def _state_vector(self) -> np.ndarray:
        """proprio (18) = joint pos (7), joint vel (7), tcp pos (3), gripper opening (1); then task."""
        d, arm, s = self.data, self.arm, self._state
        s[0:7] = d.qpos[arm.qs]
        s[7:14] = d.qvel[arm.ds]
        s[14:17] = d.site_xpos[arm.tcp]
        s[17] = d.qpos[arm.finger_qadr[0]] + d.qpos[arm.finger_qadr[1]]
        self._task_obs(s[18:])
        out = s.astype(np.float32)
        if self._obs_noise > 0:
            out += self.np_random.normal(0.0, self._obs_noise, out.shape).astype(np.float32)
        return out

    def _get_obs(self) -> dict[str, np.ndarray]:
        obs: dict[str, np.ndarray] = {}
        if self.obs_mode != "pixels":
            obs["state"] = self._state_vector()
        if self.obs_mode != "state":
            for cam in self.cameras:
                obs[f"pixels/{cam}"] = self.render_camera(cam, self.image_size, self.image_size)
        return obs

    # --- rendering -------------------------------------------------------------------------------
    def render_camera(self, camera: str, height: int, width: int) -> np.ndarray:
        """RGB image ``(height, width, 3)`` uint8 of ``camera`` (``front`` | ``wrist``) now."""
        r = self._renderers.get((height, width))
        if r is None:
            _load_torch_compiler_before_gl()
            r = self._renderers[(height, width)] = mujoco.Renderer(self.model, height, width)
        r.update_scene(self.data, camera)
        return r.render().copy()

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self.render_camera("front", *self.render_size)

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()
        super().close()
