"""Built-in MuJoCo tasks: API contract, determinism, success geometry, experts, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import robot_rl  # noqa: F401  (registers the gymnasium ids)

pytestmark = [pytest.mark.sim]

mujoco = pytest.importorskip("mujoco")

from robot_rl.sim import expert_action  # noqa: E402
from robot_rl.sim.base import COLOURS  # noqa: E402

IDS = ["robot_rl/Reach-v0", "robot_rl/Push-v0", "robot_rl/Lift-v0", "robot_rl/PegInsert-v0"]


def rollout(env: gym.Env, seed: int, n: int, action_seed: int = 0) -> list[np.ndarray]:
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(action_seed)
    out = [obs["state"]]
    for _ in range(n):
        obs, *_ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        out.append(obs["state"])
    return out


@pytest.mark.parametrize("env_id", IDS)
def test_env_checkers(env_id: str) -> None:
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    env = gym.make(env_id)
    gym_check(env.unwrapped, skip_render_check=True)
    sb3_check(env.unwrapped, warn=True)
    obs, info = env.reset(seed=0)
    assert set(obs) == {"state"} and obs["state"].dtype == np.float32
    assert env.action_space.shape == (4,) and env.action_space.dtype == np.float32
    assert isinstance(info["is_success"], bool) and isinstance(info["task"], str) and info["task"]
    _, _, _, _, info = env.step(env.action_space.sample())
    assert isinstance(info["is_success"], bool) and info["task"]
    env.close()


def test_pixel_mode_tiny() -> None:
    from gymnasium.utils.env_checker import check_env as gym_check

    env = gym.make(
        "robot_rl/Lift-v0",
        obs_mode="state+pixels",
        image_size=16,
        cameras=("front", "wrist"),
        render_mode="rgb_array",
    )
    gym_check(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    for cam in ("front", "wrist"):
        img = obs[f"pixels/{cam}"]
        assert img.shape == (16, 16, 3) and img.dtype == np.uint8 and img.std() > 0
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
    env.close()
    env = gym.make("robot_rl/Reach-v0", obs_mode="pixels", image_size=12)
    obs, _ = env.reset(seed=1)
    assert set(obs) == {"pixels/front"}
    env.close()


def test_same_seed_same_trajectory() -> None:
    a, b = gym.make("robot_rl/Lift-v0"), gym.make("robot_rl/Lift-v0")
    ta, tb = rollout(a, 3, 25), rollout(b, 3, 25)
    assert all(np.array_equal(x, y) for x, y in zip(ta, tb))
    tc = rollout(a, 4, 2)
    assert not np.array_equal(ta[0], tc[0])
    # noisy expert with hesitation is reproducible too (expert RNG re-derived at reset)
    for env in (a, b):
        env.reset(seed=7)
    acts_a = [expert_action(a, noise=0.3, hesitation=0.2) for _ in range(3)]
    acts_b = [expert_action(b, noise=0.3, hesitation=0.2) for _ in range(3)]
    assert all(np.array_equal(x, y) for x, y in zip(acts_a, acts_b))


def test_vector_envs_autoreset() -> None:
    def make() -> gym.Env:
        return gym.make("robot_rl/Reach-v0", horizon=3)

    for cls in (gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv):
        venv = cls([make, make])
        obs, info = venv.reset(seed=[0, 1])
        assert obs["state"].shape == (2, 24)
        zero = np.zeros((2, 4), dtype=np.float32)
        for _ in range(3):
            obs, rew, term, trunc, info = venv.step(zero)
        assert trunc.all() and not term.any() and info["is_success"].shape == (2,)
        _, rew, term, trunc, _ = venv.step(zero)  # next-step autoreset: this step is the reset
        assert not trunc.any() and np.all(rew == 0)
        for _ in range(3):
            *_, trunc, _ = venv.step(zero)
        assert trunc.all()  # the episode counter restarted at the autoreset
        venv.close()


@pytest.mark.parametrize("env_id", IDS)
def test_expert_succeeds(env_id: str) -> None:
    env = gym.make(env_id, terminate_on_success=True)
    for seed in range(5):
        env.reset(seed=100 + seed)
        for _ in range(env.unwrapped.horizon):
            _, rew, term, trunc, info = env.step(expert_action(env))
            if term or trunc:
                break
        assert term and info["is_success"] and rew == 1.0, (env_id, seed)
    env.close()


def test_expert_joint_pos_control() -> None:
    env = gym.make("robot_rl/Lift-v0", control="joint_pos", terminate_on_success=True)
    assert env.action_space.shape == (8,)
    env.reset(seed=5)
    for _ in range(100):
        *_, term, trunc, info = env.step(expert_action(env))
        if term or trunc:
            break
    assert info["is_success"]


def test_success_geometry() -> None:
    reach = gym.make("robot_rl/Reach-v0").unwrapped
    reach.reset(seed=0)
    reach.goal[:] = reach.arm.tcp_pos + np.array([0.01, 0.0, 0.0])
    assert reach._is_success()
    reach.goal[:] = reach.arm.tcp_pos + np.array([0.0, 0.1, 0.0])
    assert not reach._is_success()

    lift = gym.make("robot_rl/Lift-v0").unwrapped
    lift.reset(seed=0)
    assert not lift._is_success()
    lift.set_object_pose(np.array([0.5, 0.0, 0.02 + 0.09]))
    assert lift._is_success()
    lift.set_object_pose(np.array([0.5, 0.0, 0.02 + 0.05]))
    assert not lift._is_success()

    push = gym.make("robot_rl/Push-v0").unwrapped
    push.reset(seed=0)
    assert not push._is_success()
    push.set_object_pose(np.array([push.goal[0] + 0.01, push.goal[1], 0.025]))
    assert push._is_success()
    push.set_object_pose(np.array([push.goal[0] + 0.06, push.goal[1], 0.025]))
    assert not push._is_success()

    peg = gym.make("robot_rl/PegInsert-v0").unwrapped
    peg.reset(seed=0)
    assert not peg._is_success()
    hole = peg.data.site_xpos[peg._hole_site].copy()
    peg.set_object_pose(hole + np.array([0.0, 0.0, 0.05 - 0.03]))  # bottom 3 cm below the hole top
    assert peg._is_success()
    peg.set_object_pose(hole + np.array([0.0, 0.0, 0.05 - 0.01]))  # only 1 cm deep
    assert not peg._is_success()
    peg.set_object_pose(hole + np.array([0.06, 0.0, 0.05 - 0.03]))  # beside the fixture
    assert not peg._is_success()


def test_task_text_matches_colour() -> None:
    env = gym.make("robot_rl/Lift-v0").unwrapped
    texts = set()
    for seed in range(6):
        _, info = env.reset(seed=seed)
        texts.add(info["task"])
        words = [w for w in info["task"].split() if w in COLOURS]
        assert len(words) == 1
        assert np.allclose(env.model.geom_rgba[env._obj_geom, :3], COLOURS[words[0]])
    assert len(texts) > 1


def test_bad_actions() -> None:
    env = gym.make("robot_rl/Push-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0, 0, 0], dtype=np.float32))
    with pytest.raises(ValueError, match="NaN or inf"):
        env.step(np.array([0, np.inf, 0, 0], dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, dtype=np.float32))
    a, b = gym.make("robot_rl/Push-v0"), gym.make("robot_rl/Push-v0")
    a.reset(seed=1)
    b.reset(seed=1)
    oa = a.step(np.array([5.0, -7.0, 2.0, 3.0]))[0]
    ob = b.step(np.array([1.0, -1.0, 1.0, 1.0]))[0]
    assert np.array_equal(oa["state"], ob["state"])


@pytest.mark.parametrize("bad", [1e30, np.nan])
def test_instability_is_detected(bad: float) -> None:
    env = gym.make("robot_rl/Lift-v0")
    obs0, _ = env.reset(seed=0)
    obs1, *_ = env.step(np.zeros(4, dtype=np.float32))
    env.unwrapped.data.qvel[:] = bad
    obs, _, _, trunc, info = env.step(np.zeros(4, dtype=np.float32))
    assert trunc and info["sim_unstable"] and not info["is_success"]
    assert np.isfinite(obs["state"]).all() and np.array_equal(obs["state"], obs1["state"])
    obs, *_, trunc, info = env.step(np.zeros(4, dtype=np.float32))
    assert trunc and info["sim_unstable"] and np.isfinite(obs["state"]).all()
    obs, info = env.reset(seed=0)
    assert np.array_equal(obs["state"], obs0["state"]) and "sim_unstable" not in info


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"foo": 1}, "allowed"),
        ({"obs_mode": "rgb"}, "obs_mode"),
        ({"reward_type": "shaped"}, "reward_type"),
        ({"control": "osc"}, "control"),
        ({"render_mode": "depth_array"}, "render_mode"),
        ({"horizon": 0}, "horizon"),
        ({"randomization": "extreme"}, "allowed"),
        ({"randomization": {"gravity": (0, 1)}}, "allowed"),
        ({"cameras": ("top",)}, "cameras"),
        ({"image_size": 2}, "image_size"),
    ],
)
def test_bad_kwargs(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        gym.make("robot_rl/Reach-v0", **kwargs)


def test_reward_truncation_and_termination() -> None:
    env = gym.make("robot_rl/Reach-v0", reward_type="dense", horizon=4)
    env.reset(seed=0)
    for _ in range(4):
        _, rew, term, trunc, _ = env.step(np.zeros(4, dtype=np.float32))
        assert 0.0 <= rew <= 1.0 and not term
    assert trunc
    env = gym.make("robot_rl/Lift-v0", reward_type="dense")
    env.reset(seed=0)
    rewards = [env.step(expert_action(env))[1] for _ in range(30)]
    assert 0.0 < rewards[0] < rewards[-1] <= 1.0


def test_ee_yaw_turns_the_hand_and_keeps_the_expert_working() -> None:
    env = gym.make("robot_rl/Lift-v0", ee_yaw=True)
    assert env.action_space.shape == (5,)
    env.reset(seed=0)
    arm = env.unwrapped.arm

    def hand_yaw() -> float:
        m = arm.tcp_mat  # tcp x axis in the world frame; R_DOWN has it along +x (yaw 0)
        return float(np.arctan2(m[1, 0], m[0, 0]))

    start_pos, start_yaw = arm.tcp_pos.copy(), hand_yaw()
    for _ in range(5):  # dyaw = +1: 0.2 rad per step -> 1.0 rad target
        env.step(np.array([0.0, 0.0, 0.0, 1.0, -1.0], np.float32))
    for _ in range(10):
        env.step(np.array([0.0, 0.0, 0.0, 0.0, -1.0], np.float32))
    turned = (hand_yaw() - start_yaw + np.pi) % (2 * np.pi) - np.pi
    assert abs(turned - 1.0) < 0.1, turned
    assert np.linalg.norm(arm.tcp_pos - start_pos) < 0.02
    env.reset(seed=1)
    success = False
    for _ in range(100):
        _, _, terminated, truncated, info = env.step(expert_action(env))
        success = success or info["is_success"]
        if terminated or truncated:
            break
    assert success
    env.close()
    with pytest.raises(ValueError, match="ee_yaw"):
        gym.make("robot_rl/Lift-v0", ee_yaw=True, control="joint_pos")
