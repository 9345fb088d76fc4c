"""Pixel observations through the imitation path: chunk windows of images, the episode store round
trip, base-action relabeling with images, and a Trainer run on Lift with ``state+pixels``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robot_rl.core.errors import ConfigError, DataError
from robot_rl.core.types import ActionSpec, ObsSpec
from robot_rl.data.demos import ChunkDataset, Episode, episode_from_record, episode_to_record, load_demos
from robot_rl.data.episode_store import EpisodeStore

H = W = 4  # tiny synthetic images


def frames(values, h: int = H, w: int = W) -> np.ndarray:
    """uint8 ``[len(values), h, w, 3]``; every pixel of frame ``i`` is ``values[i]``."""
    return np.broadcast_to(np.asarray(values, np.uint8)[:, None, None, None], (len(values), h, w, 3)).copy()


def episode(n: int, base: int, cameras=("front",)) -> Episode:
    """States, actions and images encode the time index: ``state_t = base + t``, the front image of
    step ``t`` is ``base + t`` everywhere (the wrist one ``base + t + 100``); final frame ``base + n``."""
    t = np.arange(n)
    offsets = {"front": 0, "wrist": 100}
    return Episode(
        states=(base + t)[:, None].astype(np.float32),
        actions=(base + t)[:, None].astype(np.float32),
        rewards=np.zeros(n, np.float32),
        success=True,
        final_state=np.array([base + n], np.float32),
        terminated=True,
        pixels={cam: frames(base + t + offsets[cam]) for cam in cameras},
        final_pixels={cam: frames([base + n + offsets[cam]])[0] for cam in cameras},
    )


@pytest.mark.unit
def test_chunk_dataset_pixel_windows_by_hand():
    # episode A: steps 0..2 (values 0, 1, 2); episode B: steps 0..1 (values 10, 11); To = 3
    ds = ChunkDataset([episode(3, 0, ("front", "wrist")), episode(2, 10, ("front", "wrist"))], 3, 2)
    # history t-2..t, the first frame repeated before the episode start, never crossing episodes
    expected = {(0, 0, 0), (0, 0, 1), (0, 1, 2), (10, 10, 10), (10, 10, 11)}
    batch = ds.sample(64, np.random.default_rng(0))
    front, wrist = batch["obs_pixels/front"], batch["obs_pixels/wrist"]
    assert front.dtype == torch.uint8 and front.shape == (64, 3, H, W, 3) and wrist.shape == front.shape
    seen = set()
    for b in range(64):
        window = tuple(int(v) for v in front[b, :, 0, 0, 0])
        assert window in expected
        seen.add(window)
        assert (front[b] == front[b, :, :1, :1, :1]).all()  # a whole frame keeps its value
        np.testing.assert_array_equal(wrist[b, :, 0, 0, 0].numpy(), np.array(window) + 100)
        # the images are the frames of the state history, step for step
        np.testing.assert_array_equal(batch["obs_state"][b, :, 0].numpy(), window)
    assert seen == expected  # 64 draws from 5 windows: each one comes up
    assert ds.cameras == ["front", "wrist"]


@pytest.mark.unit
def test_chunk_dataset_camera_selection_and_state_dict():
    eps = [episode(3, 0), episode(2, 10)]
    states_only = ChunkDataset(eps, 2, 2, cameras=())
    assert not [k for k in states_only.sample(4, np.random.default_rng(0)) if k.startswith("obs_pixels/")]
    with pytest.raises(DataError, match=r"demonstration 0 has no images of camera\(s\) \['wrist'\]"):
        ChunkDataset(eps, 2, 2, cameras=["wrist"])
    ds = ChunkDataset(eps, 2, 2)
    back = ChunkDataset.from_state_dict(ds.state_dict())
    a, b = ds.sample(8, np.random.default_rng(1)), back.sample(8, np.random.default_rng(1))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.unit
def test_episode_validates_pixels():
    ep = episode(3, 0)
    with pytest.raises(DataError, match=r"pixels\['front'\] has 2 frames for 3 steps"):
        Episode(ep.states, ep.actions, ep.rewards, True, pixels={"front": ep.pixels["front"][:2]})
    with pytest.raises(DataError, match=r"expected uint8 \[T, H, W, 3\]"):
        Episode(
            ep.states, ep.actions, ep.rewards, True, pixels={"front": ep.pixels["front"].astype(np.float32)}
        )
    with pytest.raises(DataError, match="final_pixels cameras"):
        Episode(
            ep.states,
            ep.actions,
            ep.rewards,
            True,
            pixels=ep.pixels,
            final_pixels={"wrist": ep.final_pixels["front"]},
        )


@pytest.mark.unit
def test_episode_store_round_trip_with_pixels(tmp_path):
    eps = [episode(3, 0, ("front", "wrist")), episode(5, 20, ("front", "wrist"))]
    store = EpisodeStore(tmp_path / "demos", create=True, fps=20.0, compress=True)
    for ep in eps:
        store.append(episode_to_record(ep, metadata={"seed": 1}))
    record = store[0]
    # the store keeps T+1 observations: the frames of the states, then the final one
    np.testing.assert_array_equal(record.observations["pixels/front"][:, 0, 0, 0], [0, 1, 2, 3])
    assert store.obs_spec["pixels/wrist"] == {"shape": [H, W, 3], "dtype": "uint8"}

    loaded = load_demos(str(tmp_path / "demos"))
    assert len(loaded) == 2
    for ep, back in zip(eps, loaded):
        assert back.cameras == ["front", "wrist"]
        for name in ("states", "actions", "rewards", "final_state"):
            np.testing.assert_array_equal(getattr(back, name), getattr(ep, name))
        for cam in ep.cameras:
            np.testing.assert_array_equal(back.pixels[cam], ep.pixels[cam])
            np.testing.assert_array_equal(back.final_pixels[cam], ep.final_pixels[cam])
        assert back.terminated == ep.terminated and back.success == ep.success
    assert load_demos(str(tmp_path / "demos"), cameras=())[0].pixels == {}
    assert episode_from_record(store[1], cameras=["wrist"]).cameras == ["wrist"]
    with pytest.raises(DataError, match="no 'pixels/side' observation"):
        load_demos(str(tmp_path / "demos"), cameras=["side"])
    no_final = Episode(
        eps[0].states,
        eps[0].actions,
        eps[0].rewards,
        True,
        final_state=eps[0].final_state,
        pixels=eps[0].pixels,
    )
    with pytest.raises(DataError, match="no final observation"):
        episode_to_record(no_final)


@pytest.mark.unit
def test_relabel_feeds_the_base_its_images():
    from robot_rl.policies.diffusion import DiffusionConfig, DiffusionPolicy
    from robot_rl.trainer import relabel_demo_base_actions

    cfg = DiffusionConfig(
        cnn_channels=[4],
        image_feature_dim=4,
        mlp_hidden=16,
        mlp_blocks=1,
        num_inference_steps=2,
        chunk_size=4,
        execution_horizon=2,
    )
    policy = DiffusionPolicy(cfg, ObsSpec(1, {"front": (H, W, 3)}), ActionSpec.normalized(1)).eval()
    ep = episode(5, 0)
    seen = []
    act = policy.act
    policy.act = lambda obs: seen.append(obs) or act(obs)  # type: ignore[method-assign]
    policy.seed(3)
    labels = relabel_demo_base_actions(policy, ep)
    assert labels.shape == (6, 1) and labels.dtype == np.float32
    # T + 1 observations, each with the state and the image of the same step
    assert [int(o["state"][0]) for o in seen] == [0, 1, 2, 3, 4, 5]
    assert [int(o["pixels/front"][0, 0, 0]) for o in seen] == [0, 1, 2, 3, 4, 5]
    policy.seed(3)  # the same actions as the base acting on the episode from a reset
    policy.reset()
    np.testing.assert_array_equal(labels, np.stack([act(o) for o in ep.observations()]))
    with pytest.raises(DataError, match=r"the base policy sees camera\(s\) \['front'\]"):
        relabel_demo_base_actions(policy, episode(5, 0, cameras=()))


# --- the Trainer on a real task (MuJoCo, offscreen rendering) ---

PIXEL_RUN = {
    "task": "lift",
    "task.obs_mode": "state+pixels",
    "task.image_size": 32,
    "task.horizon": 30,  # the noise-free scripted lift takes ~22 steps; evaluation episodes stay short
    "policy": "diffusion",
    "policy.cnn_channels": "[8,8]",
    "policy.image_feature_dim": 16,
    "policy.mlp_hidden": 64,
    "policy.mlp_blocks": 1,
    "policy.num_inference_steps": 4,
    "demos.n_episodes": 3,
    "demos.expert_noise": 0.0,  # the run config's noisy expert needs longer episodes
    "base.steps": 20,
    "base.batch_size": 16,
    "train.checkpoint_every": 10,
    "eval.n_episodes": 2,
}


@pytest.mark.smoke
@pytest.mark.sim
def test_trainer_state_plus_pixels_trains_evaluates_and_bundles(tmp_path):
    pytest.importorskip("mujoco")
    from robot_rl.deploy.bundle import load_policy
    from robot_rl.trainer import Trainer, make_env
    from tests.conftest import make_train_config

    cfg = make_train_config(tmp_path / "run", **PIXEL_RUN)
    trainer = Trainer(cfg)
    assert trainer.obs_spec == ObsSpec(28, {"front": (32, 32, 3)})
    summary = trainer.run()
    assert summary.finished and summary.steps == 20 and summary.eval_result.n_episodes == 2
    assert trainer.demos and all(ep.pixels["front"].shape[1:] == (32, 32, 3) for ep in trainer.demos)
    run = tmp_path / "run"
    assert "diffusion" in (run / "report.md").read_text() and (run / "eval.json").is_file()
    meta = json.loads((run / "bundle" / "bundle.json").read_text())
    assert meta["obs_spec"] == {"state_dim": 28, "cameras": {"front": [32, 32, 3]}}

    loaded = load_policy(run / "bundle")
    assert loaded.obs_spec == trainer.obs_spec
    env = make_env(cfg)
    try:
        obs, _ = env.reset(seed=7)
        observations = [obs]
        for _ in range(4):
            obs, *_ = env.step(env.action_space.sample() * 0.0)
            observations.append(obs)
    finally:
        env.close()
    for policy in (trainer.policy, loaded):
        policy.reset()
        policy.seed(11)
    for obs in observations:  # two re-plans (execution horizon 4): history and image encoder in use
        np.testing.assert_array_equal(trainer.policy.act(obs), loaded.act(obs))
    # the images matter: the same state with a blank image gives other features
    history = {"obs_state": torch.as_tensor(observations[0]["state"])[None, None].repeat(1, 2, 1)}
    image = torch.as_tensor(observations[0]["pixels/front"])[None, None].repeat(1, 2, 1, 1, 1)
    seen = loaded.encode({**history, "obs_pixels/front": image})
    blank = loaded.encode({**history, "obs_pixels/front": torch.zeros_like(image)})
    assert not torch.allclose(seen, blank)


@pytest.mark.smoke
@pytest.mark.sim
def test_pixel_imitation_resumes_exactly(tmp_path):
    """The checkpoint keeps the demos' images once; the dataset is rebuilt from them on resume."""
    pytest.importorskip("mujoco")
    from robot_rl.trainer import Trainer
    from tests.conftest import make_train_config

    straight = Trainer(make_train_config(tmp_path / "a", **PIXEL_RUN))
    straight.run(until_step=10)
    half = Trainer(make_train_config(tmp_path / "b", **PIXEL_RUN))
    half.run(until_step=5)
    del half
    resumed = Trainer(make_train_config(tmp_path / "b", **PIXEL_RUN, resume="true"))
    assert resumed.step == 5 and resumed.dataset is not None and resumed.dataset.cameras == ["front"]
    resumed.run(until_step=10)
    a = straight.imitation.state_dict()["policy"]
    b = resumed.imitation.state_dict()["policy"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.sim
@pytest.mark.unit
def test_obs_spec_follows_the_policy(tmp_path):
    pytest.importorskip("mujoco")
    from robot_rl.trainer import Trainer
    from tests.conftest import make_train_config

    # bc_chunk has no image encoder: it keeps using the state of a state+pixels task
    cfg = make_train_config(
        tmp_path / "bc",
        task="lift",
        **{"task.obs_mode": "state+pixels", "task.image_size": 16, "policy": "bc_chunk"},
    )
    assert Trainer(cfg).obs_spec == ObsSpec(28)
    # no state at all: a one-line error
    cfg = make_train_config(
        tmp_path / "px", task="lift", **{"task.obs_mode": "pixels", "task.image_size": 16}
    )
    with pytest.raises(
        ConfigError, match=r"needs a 'state' observation; task.obs_mode='pixels' \(use state\+pixels\)"
    ):
        Trainer(cfg)
