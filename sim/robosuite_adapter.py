"""robosuite tasks (Lift, Can, Square) behind the robot_rl environment contract (ARCHITECTURE §3.1).

Registered ids: ``robot_rl/robosuite-Lift-v0``, ``robot_rl/robosuite-Can-v0`` and
``robot_rl/robosuite-Square-v0`` (robot Panda, robosuite's default Panda controller = OSC_POSE arm +
gripper, control rate 20 Hz).

Decisions worth knowing:

- **Action**: ``Box(-1, 1, (7,), float32)``, robosuite's normalized OSC action
  ``[dx, dy, dz, dax, day, daz, gripper]`` (position/axis-angle deltas of the end effector in the
  robot base frame, scaled by the controller to at most 5 cm / 0.5 rad per control step; gripper
  ``-1`` open, ``+1`` close). Out-of-range actions are clipped; NaN/inf raise ``ValueError``.
- **State** (float32, fixed order, see :attr:`RobosuiteEnv.state_layout`): proprio
  ``eef_pos(3) eef_quat(4, xyzw) gripper_qpos(2) joint_pos_cos(7) joint_pos_sin(7) joint_vel(7)
  gripper_qvel(2)`` (32 values) followed by the task's object observables in robosuite's order
  (Lift: ``cube_pos cube_quat gripper_to_cube_pos`` = 10; Can: ``Can_to_robot0_eef_pos
  Can_to_robot0_eef_quat Can_pos Can_quat`` = 14; Square: the same with ``SquareNut`` = 14).
  Positions in metres in the world frame, quaternions xyzw.
- **Pixels**: ``"pixels/front"`` (robosuite camera ``agentview``) and ``"pixels/wrist"``
  (``robot0_eye_in_hand``), uint8 H×W×3, flipped upright (robosuite renders OpenGL-style,
  bottom row first). Size from ``image_size`` (default 84×84, as in robomimic image runs); cameras from
  ``cameras`` (default ``("front",)``, as our own tasks).
- **Horizon**: 400 control steps (20 s) for all three tasks by default, robomimic's evaluation
  horizon for these tasks; the episode is *truncated* there. robosuite's own ``done`` is disabled
  (``ignore_done=True``) so the horizon is ours alone.
- **Reward**: ``"sparse"`` = 1.0 on the steps where ``_check_success()`` holds, else 0.0;
  ``"dense"`` = robosuite's shaped reward (``reward_shaping=True``, ``reward_scale=1`` so in [0, 1]).
- **Seeding**: robosuite 1.5 draws its initial states (object placement, robot init noise) from
  ``env.rng``, a ``numpy.random.Generator`` shared by reference with its placement samplers, and a
  few corners (observable corruption, unused here) from the global ``np.random``. Every
  :meth:`reset` draws a 63-bit seed from the gymnasium ``np_random`` (so ``reset(seed=s)`` followed
  by seedless resets is a reproducible sequence), re-seeds ``env.rng`` *in place* from it, and runs
  robosuite's reset with the global ``np.random`` seeded from it too; the caller's global
  ``np.random`` state is restored afterwards. Resets are soft (``hard_reset=False``: the model is
  compiled once), which is also much faster.
- ``randomization`` accepts only ``"none"`` for now (robosuite's own placement ranges still
  apply: that is the task's initial-state distribution, not domain randomization); any other
  profile or a mapping raises ``ValueError``. ``control`` accepts only ``"ee_delta"``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

# task name -> (robosuite env name, language instruction, default horizon in control steps)
TASKS: dict[str, tuple[str, str, int]] = {
    "Lift": ("Lift", "lift the cube", 400),
    "Can": ("PickPlaceCan", "pick up the can and place it in its bin", 400),
    "Square": ("NutAssemblySquare", "fit the square nut onto the peg", 400),
}
# our camera name -> robosuite camera name
CAMERAS: dict[str, str] = {"front": "agentview", "wrist": "robot0_eye_in_hand"}
# proprio part of the state vector: (robosuite observable, size)
PROPRIO_KEYS: tuple[tuple[str, int], ...] = (
    ("robot0_eef_pos", 3),
    ("robot0_eef_quat", 4),
    ("robot0_gripper_qpos", 2),
    ("robot0_joint_pos_cos", 7),
    ("robot0_joint_pos_sin", 7),
    ("robot0_joint_vel", 7),
    ("robot0_gripper_qvel", 2),
)
OBS_MODES = ("state", "pixels", "state+pixels")
REWARD_TYPES = ("sparse", "dense")
CONTROLS = ("ee_delta",)
RANDOMIZATIONS = ("none",)
CONTROL_FREQ_HZ = 20
ALLOWED_KWARGS = (
    "task",
    "obs_mode",
    "reward_type",
    "randomization",
    "control",
    "render_mode",
    "horizon",
    "terminate_on_success",
    "cameras",
    "image_size",
    "render_size",
)

# robosuite warns at import about optional extras (private macros file, robosuite_models, mink IK):
# harmless noise for us. These exact messages are dropped; everything else (errors included) passes.
_NOISE_PREFIXES = (
    "No private macro file found",
    "It is recommended to use a private macro file",
    "To setup, run:",
    "Could not import robosuite_models",
    "Could not load the mink-based whole-body IK",
    "Loading controller configuration from",
)


class _RobosuiteNoiseFilter(logging.Filter):
    """Drops robosuite's known, harmless import/setup chatter (INFO/WARNING only)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        return not str(record.getMessage()).startswith(_NOISE_PREFIXES)


_robosuite: Any = None


def _import_robosuite() -> Any:
    """Import robosuite quietly (known chatter filtered on its logger and handlers) and cache it."""
    global _robosuite
    if _robosuite is None:
        try:
            import robosuite
        except ImportError as exc:  # pragma: no cover - depends on the install
            if exc.name != "robosuite" and "robosuite" not in str(exc):
                raise
            raise ImportError(
                "robosuite is not installed: install the 'sim' extra (pip install 'robot-rl[sim]')"
            ) from exc
        _robosuite = robosuite
    return _robosuite


def _install_noise_filter() -> None:
    # The filter sits on the logger (robosuite creates it at import and only adds handlers and sets
    # its level afterwards, so a filter installed before the import survives).
    logger = logging.getLogger("robosuite_logs")
    if not any(isinstance(f, _RobosuiteNoiseFilter) for f in logger.filters):
        logger.addFilter(_RobosuiteNoiseFilter())


_install_noise_filter()


@contextlib.contextmanager
def _seeded_global_numpy(seed: int) -> Iterator[None]:
    """Seed the global ``np.random`` for the block and restore the caller's state afterwards."""
    saved = np.random.get_state()
    np.random.seed(seed % (2**32))
    try:
        yield
    finally:
        np.random.set_state(saved)


def _as_hw(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, int | np.integer):
        h = w = int(value)
    else:
        vals = tuple(int(v) for v in value)
        if len(vals) != 2:
            raise ValueError(f"{name} must be an int or (height, width), got {value!r}")
        h, w = vals
    if h <= 0 or w <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return h, w


class RobosuiteEnv(gym.Env):
    """A robosuite manipulation task (Panda, OSC_POSE, 20 Hz) under the robot_rl env contract.

    Args:
        task: ``"Lift"``, ``"Can"`` or ``"Square"``.
        obs_mode: ``"state"``, ``"pixels"`` or ``"state+pixels"``.
        reward_type: ``"sparse"`` (1.0 on success steps) or ``"dense"`` (robosuite's shaped reward).
        randomization: only ``"none"`` is supported for now.
        control: only ``"ee_delta"`` (robosuite OSC_POSE, its default Panda controller).
        render_mode: ``None`` or ``"rgb_array"`` (front camera at ``render_size``).
        horizon: episode length in control steps (truncation); default 400 (20 s) for every task.
        terminate_on_success: end the episode (``terminated=True``) on the first success step.
        cameras: cameras for pixel observations, a subset of ``("front", "wrist")``; default ``("front",)``.
        image_size: pixel observation size, an int or ``(height, width)``; default 84.
        render_size: size of :meth:`render` frames, an int or ``(height, width)``; default 256.

    Raises:
        ValueError: on an unknown keyword argument or an unsupported value.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": CONTROL_FREQ_HZ}

    def __init__(self, task: str = "Lift", **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(ALLOWED_KWARGS))
        if unknown:
            raise ValueError(f"unknown keyword argument(s) {unknown}; allowed: {list(ALLOWED_KWARGS)}")
        obs_mode = kwargs.get("obs_mode", "state")
        reward_type = kwargs.get("reward_type", "sparse")
        randomization = kwargs.get("randomization", "none")
        control = kwargs.get("control", "ee_delta")
        render_mode = kwargs.get("render_mode")
        horizon = kwargs.get("horizon")
        cameras_arg = kwargs.get("cameras") or ("front",)
        if isinstance(cameras_arg, str):
            raise ValueError(f"cameras must be a sequence of names from {list(CAMERAS)}, got {cameras_arg!r}")
        cameras = tuple(cameras_arg)
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; allowed: {list(TASKS)}")
        if obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {list(OBS_MODES)}, got {obs_mode!r}")
        if reward_type not in REWARD_TYPES:
            raise ValueError(f"reward_type must be one of {list(REWARD_TYPES)}, got {reward_type!r}")
        if isinstance(randomization, Mapping) or randomization not in RANDOMIZATIONS:
            raise ValueError(
                f"randomization {randomization!r} is not supported by the robosuite adapter yet; "
                f"allowed: {list(RANDOMIZATIONS)}"
            )
        if control not in CONTROLS:
            raise ValueError(f"control must be one of {list(CONTROLS)} for robosuite tasks, got {control!r}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        rs_name, instruction, default_horizon = TASKS[task]
        horizon = default_horizon if horizon is None else int(horizon)
        if horizon <= 0:
            raise ValueError(f"horizon must be positive, got {horizon}")
        bad_cams = [c for c in cameras if c not in CAMERAS]
        if bad_cams or not cameras or len(set(cameras)) != len(cameras):
            raise ValueError(f"cameras must be distinct names from {list(CAMERAS)}, got {list(cameras)}")

        self.task_name = task
        self.instruction = instruction
        self.obs_mode = obs_mode
        self.reward_type = reward_type
        self.render_mode = render_mode
        self.horizon = horizon
        self.terminate_on_success = bool(kwargs.get("terminate_on_success", False))
        self.control_hz = CONTROL_FREQ_HZ
        self._use_state = "state" in obs_mode
        self._use_pixels = "pixels" in obs_mode
        self.cameras = cameras if self._use_pixels else ()
        self.image_size = _as_hw(kwargs.get("image_size", 84), "image_size")
        self.render_size = _as_hw(kwargs.get("render_size", 256), "render_size")

        suite = _import_robosuite()
        need_gl = self._use_pixels or render_mode == "rgb_array"
        cam_kwargs: dict[str, Any] = {}
        if self._use_pixels:
            cam_kwargs = {
                "camera_names": [CAMERAS[c] for c in self.cameras],
                "camera_heights": self.image_size[0],
                "camera_widths": self.image_size[1],
            }
        self._env = suite.make(
            rs_name,
            robots="Panda",
            has_renderer=False,
            has_offscreen_renderer=need_gl,
            use_camera_obs=self._use_pixels,
            use_object_obs=True,
            reward_shaping=reward_type == "dense",
            reward_scale=1.0,
            control_freq=CONTROL_FREQ_HZ,
            horizon=horizon,
            ignore_done=True,
            hard_reset=False,
            **cam_kwargs,
        )
        self._flip = str(getattr(suite.macros, "IMAGE_CONVENTION", "opengl")) == "opengl"
        low, high = (np.asarray(b, dtype=np.float32) for b in self._env.action_spec)
        if low.shape != (7,) or not (np.allclose(low, -1.0) and np.allclose(high, 1.0)):
            raise RuntimeError(f"unexpected robosuite action spec {low}..{high} (expected [-1, 1]^7)")

        # Object keys in robosuite's order (the order of its "object-state" concatenation).
        self._object_keys: tuple[str, ...] = tuple(
            name
            for name, obs in self._env._observables.items()
            if obs.modality == "object" and obs.is_enabled() and obs.is_active()
        )
        raw = self._env.reset()
        layout: dict[str, slice] = {}
        i = 0
        for key, size in (*PROPRIO_KEYS, *((k, int(np.size(raw[k]))) for k in self._object_keys)):
            if int(np.size(raw[key])) != size:
                raise RuntimeError(
                    f"robosuite observable {key} has size {np.size(raw[key])}, expected {size}"
                )
            layout[key] = slice(i, i + size)
            i += size
        self.state_layout: dict[str, slice] = layout
        self._state_dim = i

        obs_spaces: dict[str, spaces.Space] = {}
        if self._use_state:
            obs_spaces["state"] = spaces.Box(-np.inf, np.inf, (self._state_dim,), np.float32)
        for cam in self.cameras:
            obs_spaces[f"pixels/{cam}"] = spaces.Box(0, 255, (*self.image_size, 3), np.uint8)
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = spaces.Box(-1.0, 1.0, (7,), np.float32)
        self._elapsed = 0
        self._needs_reset = True

    # ------------------------------------------------------------------ helpers
    @property
    def robosuite_env(self) -> Any:
        """The wrapped robosuite environment (``robosuite.environments.ManipulationEnv``)."""
        return self._env

    def _image(self, raw: Mapping[str, np.ndarray], cam: str) -> np.ndarray:
        img = np.asarray(raw[f"{CAMERAS[cam]}_image"], dtype=np.uint8)
        return np.ascontiguousarray(img[::-1] if self._flip else img)

    def _convert_obs(self, raw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        obs: dict[str, np.ndarray] = {}
        if self._use_state:
            parts = [np.asarray(raw[k], dtype=np.float64).ravel() for k, _ in PROPRIO_KEYS]
            parts += [np.asarray(raw[k], dtype=np.float64).ravel() for k in self._object_keys]
            obs["state"] = np.concatenate(parts).astype(np.float32)
        for cam in self.cameras:
            obs[f"pixels/{cam}"] = self._image(raw, cam)
        return obs

    def _info(self, success: bool) -> dict[str, Any]:
        return {"is_success": bool(success), "task": self.instruction}

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset to a new initial state; see the module docstring for how seeding works."""
        super().reset(seed=seed)
        episode_seed = int(self.np_random.integers(0, 2**63 - 1))
        # Re-seed robosuite's generator in place: its placement samplers hold a reference to it.
        self._env.rng.bit_generator.state = np.random.default_rng(episode_seed).bit_generator.state
        with _seeded_global_numpy(episode_seed):
            raw = self._env.reset()
        self._elapsed = 0
        self._needs_reset = False
        return self._convert_obs(raw), self._info(self._env._check_success())

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Apply one normalized OSC action for one control step (1/20 s)."""
        if self._needs_reset:
            raise RuntimeError("call reset() before step() (and after an episode ends)")
        act = np.asarray(action, dtype=np.float64).reshape(-1)
        if act.shape != (7,):
            raise ValueError(f"action must have 7 values, got shape {np.shape(action)}")
        if not np.all(np.isfinite(act)):
            raise ValueError(f"action contains NaN or inf: {act}")
        act = np.clip(act, -1.0, 1.0)
        raw, shaped, _, _ = self._env.step(act)
        success = bool(self._env._check_success())
        reward = float(shaped) if self.reward_type == "dense" else float(success)
        self._elapsed += 1
        terminated = self.terminate_on_success and success
        truncated = self._elapsed >= self.horizon and not terminated
        if terminated or truncated:
            self._needs_reset = True
        return self._convert_obs(raw), reward, terminated, truncated, self._info(success)

    def render(self) -> np.ndarray | None:
        """Return the front camera (robosuite ``agentview``) as uint8 H×W×3 at ``render_size``."""
        if self.render_mode != "rgb_array":
            return None
        h, w = self.render_size
        img = self._env.sim.render(width=w, height=h, camera_name=CAMERAS["front"])
        img = np.asarray(img, dtype=np.uint8)
        return np.ascontiguousarray(img[::-1] if self._flip else img)

    def close(self) -> None:
        """Release robosuite's renderer and simulation."""
        env = getattr(self, "_env", None)
        if env is not None:
            env.close()
            self._env = None
