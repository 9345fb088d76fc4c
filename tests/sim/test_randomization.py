"""Domain randomization: profiles, validation, reproducibility, ranges, no drift, effects."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import robot_rl  # noqa: F401  (registers the gymnasium ids)

pytestmark = [pytest.mark.sim]

pytest.importorskip("mujoco")

from robot_rl.sim import randomization as dr  # noqa: E402


def test_profiles_and_custom_specs() -> None:
    assert set(dr.PROFILES) == {"none", "default", "heavy"}
    for spec in dr.PROFILES.values():
        assert set(spec) == set(dr.PARAMS)
    assert dr.sample(dr.resolve_spec("none"), np.random.default_rng(0)) == dr.NOMINAL
    spec = dr.resolve_spec({"profile": "default", "friction": (0.5, 0.6), "latency_steps": 2})
    assert spec["friction"] == (0.5, 0.6) and spec["latency_steps"] == (2.0, 2.0)
    assert spec["object_mass"] == dr.PROFILES["default"]["object_mass"]
    for bad in (
        {"friction": (2.0, 1.0)},
        {"friction": "x"},
        {"light": (-1, 1)},
        {"bogus": 1},
        {"profile": "x"},
    ):
        with pytest.raises(ValueError):
            dr.resolve_spec(bad)
    with pytest.raises(ValueError, match="allowed"):
        dr.resolve_spec("extreme")


def test_reproducible_and_within_ranges() -> None:
    env = gym.make("robot_rl/Lift-v0", randomization="heavy")
    _, i1 = env.reset(seed=11)
    _, i2 = env.reset(seed=11)
    _, i3 = env.reset(seed=12)
    assert i1["randomization"] == i2["randomization"] != i3["randomization"]
    spec = dr.PROFILES["heavy"]
    for seed in range(10):
        _, info = env.reset(seed=seed)
        params = info["randomization"]
        assert set(params) == set(dr.PARAMS) and all(isinstance(v, float) for v in params.values())
        for key, (lo, hi) in spec.items():
            assert lo <= params[key] <= hi, key
        assert params["latency_steps"] == int(params["latency_steps"])


def test_nominal_restored_no_drift() -> None:
    fresh = gym.make("robot_rl/Push-v0").unwrapped
    env = gym.make("robot_rl/Push-v0", randomization="heavy").unwrapped
    g, b = env._obj_geom_ids[0], env._obj_body_ids[0]
    table = env.model.geom("table").id
    for seed in range(5):  # repeated resets: values are always nominal * sample, never compounded
        _, info = env.reset(seed=seed)
        p = info["randomization"]
        assert np.isclose(env.model.geom_friction[g, 0], fresh.model.geom_friction[g, 0] * p["friction"])
        assert np.isclose(
            env.model.geom_friction[table, 0], fresh.model.geom_friction[table, 0] * p["friction"]
        )
        assert np.isclose(env.model.body_mass[b], fresh.model.body_mass[b] * p["object_mass"])
        assert np.allclose(env.model.geom_size[g], fresh.model.geom_size[g] * p["object_size"])
        assert np.allclose(env.model.dof_damping[:7], fresh.model.dof_damping[:7] * p["joint_damping"])
        kp = env.model.actuator_gainprm[:7, 0]
        assert np.allclose(kp, fresh.model.actuator_gainprm[:7, 0] * p["actuator_gain"])
        assert np.allclose(env.model.actuator_biasprm[:7, 1], -kp)
        jitter = np.linalg.norm(env.model.cam_pos - fresh.model.cam_pos, axis=1)
        assert np.allclose(jitter, p["camera_jitter"])
        assert np.allclose(env.model.light_diffuse, fresh.model.light_diffuse * p["light"])
        # the cube rests on the table whatever its size
        assert np.isclose(env.data.qpos[env._obj_qadr + 2], env.model.geom_size[g, 2])
    env.randomizer.restore()
    for name in ("geom_friction", "body_mass", "geom_size", "dof_damping", "actuator_gainprm", "cam_pos"):
        assert np.array_equal(getattr(env.model, name), getattr(fresh.model, name)), name


def test_randomized_trajectories_reproducible() -> None:
    a = gym.make("robot_rl/Lift-v0", randomization="default")
    b = gym.make("robot_rl/Lift-v0", randomization="default")
    oa, _ = a.reset(seed=5)
    ob, _ = b.reset(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(10):
        act = rng.uniform(-1, 1, 4).astype(np.float32)
        oa, *_ = a.step(act)
        ob, *_ = b.step(act)
        assert np.array_equal(oa["state"], ob["state"])


def test_latency_delays_actions() -> None:
    lag = gym.make("robot_rl/Reach-v0", randomization={"latency_steps": 2}).unwrapped
    now = gym.make("robot_rl/Reach-v0").unwrapped
    move = np.array([1.0, 0.0, 0.0, -1.0], dtype=np.float32)
    for env in (lag, now):
        env.reset(seed=0)
    x0 = lag.arm.tcp_pos[0]
    assert np.isclose(x0, now.arm.tcp_pos[0])
    lag.step(move)
    now.step(move)
    assert now.arm.tcp_pos[0] - x0 > 0.01
    assert abs(lag.arm.tcp_pos[0] - x0) < 0.005
    for _ in range(3):
        lag.step(move)
    assert lag.arm.tcp_pos[0] - x0 > 0.01


def test_obs_noise_and_visual_params() -> None:
    clean = gym.make("robot_rl/Lift-v0")
    noisy = gym.make("robot_rl/Lift-v0", randomization={"obs_noise": 0.01})
    oc, _ = clean.reset(seed=3)
    on, _ = noisy.reset(seed=3)
    diff = on["state"] - oc["state"]
    assert 0.003 < diff.std() < 0.03
    # colour jitter draws extra numbers, so compare the jittered colour with the nominal one it came from
    tinted = gym.make("robot_rl/Lift-v0", randomization={"colour_jitter": 0.2}).unwrapped
    tinted.reset(seed=3)
    g = tinted._obj_geom_ids[0]
    nominal = tinted.randomizer._nominal["geom_rgba"][g]
    delta = np.abs(tinted.model.geom_rgba[g, :3] - nominal[:3])
    assert delta.max() > 0 and np.all(delta <= 0.2 + 1e-9)


def test_expert_copes_with_latency() -> None:
    from robot_rl.sim import expert_action

    env = gym.make("robot_rl/Lift-v0", randomization={"latency_steps": 2}, terminate_on_success=True)
    env.reset(seed=0)
    for _ in range(100):
        *_, term, trunc, info = env.step(expert_action(env))
        if term or trunc:
            break
    assert info["is_success"]
