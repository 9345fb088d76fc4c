"""Domain randomization for the built-in tasks: profiles, sampling and application to a MjModel.

A *spec* maps each parameter name to a closed range ``(low, high)``; a profile is a named spec and a
user mapping overrides single entries of a base profile (``{"profile": "default", "friction": (0.5,
1.5)}``; a bare number means a fixed value). Parameters (nominal value in brackets):

- ``friction`` [1]: scale of the sliding friction of the object(s) and the table.
- ``object_mass`` [1]: scale of the object mass (and inertia).
- ``object_size`` [1]: scale of the object geom size (collision bounds updated too).
- ``joint_damping`` [1]: scale of the arm joint damping.
- ``actuator_gain`` [1]: scale of the arm position-servo stiffness kp.
- ``latency_steps`` [0]: control latency, in whole control steps (integer, action delay).
- ``obs_noise`` [0]: std of Gaussian noise added to the state vector.
- ``camera_jitter`` [0]: distance (m) of a random offset of every camera position.
- ``colour_jitter`` [0]: max per-channel offset of the object and table colours (pixels only).
- ``light`` [1]: scale of the diffuse light intensity (pixels only).

Every draw comes from the env's seeded ``np_random`` at reset, so equal seeds give equal samples;
nominal model values are restored before each sample, so nothing drifts across episodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mujoco
import numpy as np

NOMINAL: dict[str, float] = {
    "friction": 1.0,
    "object_mass": 1.0,
    "object_size": 1.0,
    "joint_damping": 1.0,
    "actuator_gain": 1.0,
    "latency_steps": 0.0,
    "obs_noise": 0.0,
    "camera_jitter": 0.0,
    "colour_jitter": 0.0,
    "light": 1.0,
}
PARAMS = tuple(NOMINAL)

Spec = dict[str, tuple[float, float]]

PROFILES: dict[str, Spec] = {
    "none": {k: (v, v) for k, v in NOMINAL.items()},
    "default": {
        "friction": (0.8, 1.2),
        "object_mass": (0.8, 1.25),
        "object_size": (0.95, 1.05),
        "joint_damping": (0.8, 1.2),
        "actuator_gain": (0.9, 1.1),
        "latency_steps": (0.0, 1.0),
        "obs_noise": (0.0, 0.002),
        "camera_jitter": (0.0, 0.01),
        "colour_jitter": (0.0, 0.05),
        "light": (0.8, 1.2),
    },
    "heavy": {
        "friction": (0.5, 1.5),
        "object_mass": (0.5, 2.0),
        "object_size": (0.9, 1.1),
        "joint_damping": (0.5, 2.0),
        "actuator_gain": (0.7, 1.3),
        "latency_steps": (0.0, 2.0),
        "obs_noise": (0.0, 0.005),
        "camera_jitter": (0.0, 0.03),
        "colour_jitter": (0.0, 0.15),
        "light": (0.5, 1.5),
    },
}


def resolve_spec(randomization: str | Mapping[str, Any]) -> Spec:
    """Validate a profile name or a custom mapping and return the full spec (ValueError if bad)."""
    if isinstance(randomization, str):
        if randomization not in PROFILES:
            raise ValueError(f"unknown randomization profile {randomization!r}; allowed: {sorted(PROFILES)}")
        return dict(PROFILES[randomization])
    if not isinstance(randomization, Mapping):
        raise ValueError(
            f"randomization must be a profile name {sorted(PROFILES)} or a mapping, got {type(randomization)}"
        )
    custom = dict(randomization)
    base = custom.pop("profile", "none")
    if base not in PROFILES:
        raise ValueError(f"unknown base profile {base!r}; allowed: {sorted(PROFILES)}")
    spec = dict(PROFILES[base])
    for key, value in custom.items():
        if key not in NOMINAL:
            raise ValueError(f"unknown randomization parameter {key!r}; allowed: {['profile', *PARAMS]}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            lo = hi = float(value)
        else:
            try:
                lo, hi = (float(v) for v in value)
            except (TypeError, ValueError):
                raise ValueError(f"randomization[{key!r}] must be a number or a (low, high) pair") from None
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi or lo < 0:
            raise ValueError(f"randomization[{key!r}] = {value!r}: need 0 <= low <= high, finite")
        spec[key] = (lo, hi)
    return spec


def sample(spec: Spec, rng: np.random.Generator) -> dict[str, float]:
    """Draw one value per parameter (fixed order, so equal seeds give equal draws)."""
    out: dict[str, float] = {}
    for key in PARAMS:
        lo, hi = spec[key]
        if key == "latency_steps":
            out[key] = float(rng.integers(int(lo), int(hi) + 1)) if hi > lo else float(int(lo))
        else:
            out[key] = float(rng.uniform(lo, hi)) if hi > lo else float(lo)
    return out


class Randomizer:
    """Keeps the nominal model values, restores them, and applies a sampled parameter set."""

    def __init__(
        self,
        model: mujoco.MjModel,
        spec: Spec,
        object_geoms: list[int],
        object_bodies: list[int],
        arm_dofs: slice,
        arm_actuators: np.ndarray,
        friction_geoms: list[int],
    ) -> None:
        self.model, self.spec = model, spec
        self.object_geoms = np.array(object_geoms, dtype=int)
        self.object_bodies = np.array(object_bodies, dtype=int)
        self.friction_geoms = np.array(friction_geoms, dtype=int)
        self.arm_dofs, self.arm_actuators = arm_dofs, arm_actuators
        m = model
        self._nominal = {
            "geom_friction": m.geom_friction.copy(),
            "geom_size": m.geom_size.copy(),
            "geom_rbound": m.geom_rbound.copy(),
            "geom_aabb": m.geom_aabb.copy(),
            "geom_rgba": m.geom_rgba.copy(),
            "mat_rgba": m.mat_rgba.copy(),
            "body_mass": m.body_mass.copy(),
            "body_inertia": m.body_inertia.copy(),
            "dof_damping": m.dof_damping.copy(),
            "actuator_gainprm": m.actuator_gainprm.copy(),
            "actuator_biasprm": m.actuator_biasprm.copy(),
            "cam_pos": m.cam_pos.copy(),
            "light_diffuse": m.light_diffuse.copy(),
        }

    @property
    def active(self) -> bool:
        return any(hi > lo or lo != NOMINAL[k] for k, (lo, hi) in self.spec.items())

    def restore(self) -> None:
        """Write every nominal value back into the model."""
        for name, value in self._nominal.items():
            getattr(self.model, name)[:] = value

    def set_nominal_rgba(self, geom: int, rgba: np.ndarray) -> None:
        """Change the nominal colour of a geom (the task picks the object colour at reset)."""
        self._nominal["geom_rgba"][geom] = rgba
        self.model.geom_rgba[geom] = rgba

    def apply(self, params: Mapping[str, float], rng: np.random.Generator) -> dict[str, float]:
        """Restore nominal values, apply ``params`` (all but colours); returns the floats for ``info``."""
        self.restore()
        m, nom = self.model, self._nominal
        info = dict(params)
        og, ob = self.object_geoms, self.object_bodies
        m.geom_friction[self.friction_geoms, 0] = (
            nom["geom_friction"][self.friction_geoms, 0] * params["friction"]
        )
        s = params["object_size"]
        if s != 1.0:
            m.geom_size[og] = nom["geom_size"][og] * s
            m.geom_rbound[og] = nom["geom_rbound"][og] * s
            m.geom_aabb[og] = nom["geom_aabb"][og] * s
        ms = params["object_mass"]
        m.body_mass[ob] = nom["body_mass"][ob] * ms
        m.body_inertia[ob] = nom["body_inertia"][ob] * ms * s * s
        m.dof_damping[self.arm_dofs] = nom["dof_damping"][self.arm_dofs] * params["joint_damping"]
        g = params["actuator_gain"]
        act = self.arm_actuators
        m.actuator_gainprm[act, 0] = nom["actuator_gainprm"][act, 0] * g
        m.actuator_biasprm[act, 1] = nom["actuator_biasprm"][act, 1] * g
        if params["camera_jitter"] > 0 and m.ncam:
            direction = rng.normal(size=(m.ncam, 3))
            direction /= np.linalg.norm(direction, axis=1, keepdims=True)
            m.cam_pos[:] = nom["cam_pos"] + direction * params["camera_jitter"]
        m.light_diffuse[:] = nom["light_diffuse"] * params["light"]
        return info

    def apply_colours(self, params: Mapping[str, float], rng: np.random.Generator) -> None:
        """Jitter object and material colours around their nominal values (after the task chose them)."""
        c = params["colour_jitter"]
        if c > 0:
            m, nom, og = self.model, self._nominal, self.object_geoms
            m.geom_rgba[og, :3] = np.clip(nom["geom_rgba"][og, :3] + rng.uniform(-c, c, (len(og), 3)), 0, 1)
            m.mat_rgba[:, :3] = np.clip(nom["mat_rgba"][:, :3] + rng.uniform(-c, c, (m.nmat, 3)), 0, 1)
