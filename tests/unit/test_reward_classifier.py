"""The learned success-classifier reward (robot_rl/rewards/classifier.py)."""

import gymnasium as gym
import numpy as np
import pytest

from robot_rl.core.errors import ConfigError, DataError
from robot_rl.data.demos import Episode
from robot_rl.rewards.classifier import (
    ClassifierReward,
    ClassifierRewardConfig,
    ClassifierTrainConfig,
    labelled_steps,
    load_classifier,
    save_classifier,
    train_classifier,
)

pytestmark = pytest.mark.unit


def episode(rng: np.random.Generator, success: bool, steps: int = 20) -> Episode:
    """States drift along dim 0; the task is solved (reward 1) while x0 > 1 (only if ``success``)."""
    x = np.cumsum(rng.uniform(0.05, 0.15, steps + 1)) * (1.0 if success else 0.3)
    states = np.stack([x, rng.normal(size=steps + 1)], axis=1).astype(np.float32)
    rewards = (states[1:, 0] > 1.0).astype(np.float32)
    return Episode(
        states[:-1], np.zeros((steps, 1), np.float32), rewards, bool(rewards.any()), final_state=states[-1]
    )


def test_labels_are_the_reward_of_the_step_on_the_next_state():
    ep = Episode(
        np.array([[0.0], [1.0]], np.float32),
        np.zeros((2, 1), np.float32),
        np.array([0.0, 1.0], np.float32),
        True,
        final_state=np.array([2.0], np.float32),
    )
    x, y, ids = labelled_steps([ep])
    np.testing.assert_array_equal(x[:, 0], [1.0, 2.0])  # s_{t+1}
    np.testing.assert_array_equal(y, [0.0, 1.0])
    np.testing.assert_array_equal(ids, [0, 0])


def test_train_calibrate_save_load(tmp_path):
    rng = np.random.default_rng(0)
    episodes = [episode(rng, success=i % 2 == 0) for i in range(24)]
    model, report = train_classifier(episodes, ClassifierTrainConfig(steps=400, hidden_dims=[32, 32]))
    assert report["precision"] >= 0.9 and report["recall"] >= 0.9  # a separable toy problem
    assert report["heldout_episodes"] == 6 and report["heldout_steps"]["positive"] > 0
    loaded, loaded_report = load_classifier(save_classifier(tmp_path / "clf", model, report))
    x, _, _ = labelled_steps(episodes)
    np.testing.assert_array_equal(loaded.prob(x), model.prob(x))
    assert loaded_report == report
    with pytest.raises(DataError, match="need both success and failure"):
        train_classifier([episode(rng, success=False) for _ in range(4)])
    with pytest.raises(ConfigError, match="is not a success classifier"):
        load_classifier(tmp_path / "missing")


class LineEnv(gym.Env):
    """A 1-D stand-in task: the state moves by the action; true success at x > 1."""

    observation_space = gym.spaces.Dict({"state": gym.spaces.Box(-10, 10, (2,), np.float32)})
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    terminate_on_success = True

    def reset(self, seed=None, options=None):
        self.x = 0.0
        return {"state": np.array([self.x, 0.0], np.float32)}, {}

    def step(self, action):
        self.x += float(action[0])
        success = self.x > 1.0
        obs = {"state": np.array([self.x, 0.0], np.float32)}
        return obs, float(success), success and self.terminate_on_success, False, {"is_success": success}


def test_the_wrapper_rewards_and_terminates_on_the_classifier_not_the_simulator(tmp_path):
    rng = np.random.default_rng(1)
    model, report = train_classifier(
        [episode(rng, success=i % 2 == 0) for i in range(24)],
        ClassifierTrainConfig(steps=400, hidden_dims=[32, 32]),
    )
    path = save_classifier(tmp_path / "clf", model, report)
    # threshold 0.999999: the classifier (almost) never fires, so neither reward nor termination come
    env = ClassifierReward(ClassifierRewardConfig(path=str(path), threshold=0.999999)).wrap(LineEnv())
    env.reset()
    _, reward, terminated, _, info = env.step(np.array([2.0], np.float32))
    assert info["is_success"] and reward == 0.0 and not terminated  # the simulator's truth stays in info
    assert 0.0 <= info["reward_success_prob"] < 0.999999 and info["reward_source"] == "classifier"
    env = ClassifierReward(ClassifierRewardConfig(path=str(path))).wrap(LineEnv())  # calibrated τ
    env.reset()
    _, reward, terminated, _, info = env.step(np.array([2.0], np.float32))
    assert reward == 1.0 and terminated and info["reward_success_prob"] >= report["threshold"]
    with pytest.raises(ConfigError, match="needs reward.path"):
        ClassifierReward(ClassifierRewardConfig())


def test_reward_train_cli_bad_store_exits_2_with_one_line(tmp_path, capsys):
    from robot_rl.rewards.classifier import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--store", str(tmp_path / "nothing"), "--out", str(tmp_path / "clf")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1
    assert not (tmp_path / "clf").exists()  # nothing half-written


# ----------------------------------------------------------------------------- image classifiers
SIZE = 16


def square_image(row: float, col: int, size: int = SIZE) -> np.ndarray:
    """A black image with a 3x3 white square whose top-left corner is at (row, col)."""
    image = np.zeros((size, size, 3), np.uint8)
    r = round(row)
    image[r : r + 3, col : col + 3] = 255
    return image


def image_episode(rng: np.random.Generator, success: bool, steps: int = 12) -> Episode:
    """A square rises from the bottom; the task is solved while its top row is < 5 (only if ``success``)."""
    top = 12.0 - np.cumsum(rng.uniform(0.8, 1.2, steps + 1)) * (1.0 if success else 0.4)
    col = int(rng.integers(0, SIZE - 3))
    images = np.stack([square_image(max(r, 0.0), col) for r in top])
    rewards = (np.round(np.maximum(top[1:], 0.0)) < 5).astype(np.float32)
    states = np.zeros((steps + 1, 1), np.float32)  # nothing to see in the state: only the images tell
    return Episode(
        states[:-1],
        np.zeros((steps, 1), np.float32),
        rewards,
        bool(rewards.any()),
        final_state=states[-1],
        pixels={"front": images[:-1]},
        final_pixels={"front": images[-1]},
    )


IMAGE_CFG = ClassifierTrainConfig(
    camera="front", steps=300, batch_size=32, hidden_dims=[32], cnn_channels=[8, 8], image_feature_dim=16
)


@pytest.fixture(scope="module")
def image_classifier(tmp_path_factory):
    rng = np.random.default_rng(0)
    episodes = [image_episode(rng, success=i % 2 == 0) for i in range(24)]
    model, report = train_classifier(episodes, IMAGE_CFG)
    return save_classifier(tmp_path_factory.mktemp("clf") / "front", model, report), episodes, model, report


def test_image_labels_are_the_next_images():
    rng = np.random.default_rng(3)
    ep = image_episode(rng, success=True, steps=3)
    x, y, _ = labelled_steps([ep], camera="front")
    assert x.dtype == np.uint8 and x.shape == (3, SIZE, SIZE, 3)
    np.testing.assert_array_equal(x[:2], ep.pixels["front"][1:])  # the images after each action
    np.testing.assert_array_equal(x[2], ep.final_pixels["front"])
    np.testing.assert_array_equal(y, ep.rewards)
    with pytest.raises(DataError, match="no 'wrist' images"):
        labelled_steps([ep], camera="wrist")


def test_image_classifier_learns_calibrates_and_round_trips(image_classifier):
    path, episodes, model, report = image_classifier
    assert report["precision"] >= 0.9 and report["recall"] >= 0.9  # separable by the square's height
    loaded, loaded_report = load_classifier(path)
    assert loaded.camera == "front" and loaded.image_size == SIZE and loaded_report == report
    x, _, _ = labelled_steps(episodes, camera="front")
    np.testing.assert_array_equal(loaded.prob(x), model.prob(x))


class SquareEnv(gym.Env):
    """The square task as an env: the action moves the square up; ``pixels`` chooses whether the
    observation carries ``pixels/front``; the env can always render the camera itself."""

    action_space = gym.spaces.Box(-20, 20, (1,), np.float32)
    terminate_on_success = True

    def __init__(self, pixels: bool):
        spaces = {"state": gym.spaces.Box(-10, 10, (1,), np.float32)}
        if pixels:
            spaces["pixels/front"] = gym.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.pixels, self.rendered = pixels, 0

    def render_camera(self, camera, height, width):
        assert (camera, height, width) == ("front", SIZE, SIZE)
        self.rendered += 1
        return square_image(self.top, 6)

    def _obs(self):
        obs = {"state": np.zeros(1, np.float32)}
        if self.pixels:
            obs["pixels/front"] = square_image(self.top, 6)
        return obs

    def reset(self, seed=None, options=None):
        self.top = 12.0
        return self._obs(), {}

    def step(self, action):
        self.top = float(np.clip(self.top - float(action[0]), 0, 12))
        success = self.top < 5
        return self._obs(), float(success), success, False, {"is_success": success}


@pytest.mark.parametrize("pixels", [True, False])
def test_the_image_wrapper_reads_or_renders_the_camera(image_classifier, pixels):
    path, *_ = image_classifier
    env = SquareEnv(pixels)
    wrapped = ClassifierReward(ClassifierRewardConfig(path=str(path))).wrap(env)
    wrapped.reset()
    _, reward, terminated, _, info = wrapped.step(np.array([1.0], np.float32))  # top 11: not solved
    assert reward == 0.0 and not terminated and not info["is_success"]
    _, reward, terminated, _, info = wrapped.step(np.array([9.0], np.float32))  # top 2: solved
    assert reward == 1.0 and terminated and info["is_success"]
    assert env.rendered == (0 if pixels else 2)  # rendered only when the observation lacks the camera


def test_an_image_classifier_needs_the_camera_or_a_renderer(image_classifier):
    path, *_ = image_classifier
    with pytest.raises(ConfigError, match="needs 'pixels/front'"):
        ClassifierReward(ClassifierRewardConfig(path=str(path))).wrap(LineEnv())


def test_the_image_classifier_scores_frames_behind_the_reward_model_interface(image_classifier):
    from robot_rl.rewards.interface import RewardModel, RewardRequest

    path, _, model, report = image_classifier
    reward = ClassifierReward(ClassifierRewardConfig(path=str(path)))
    assert isinstance(reward, RewardModel)
    low = np.stack([square_image(12, 6), square_image(11, 6)])
    high = np.stack([square_image(12, 6), square_image(1, 6)])
    # a 32 px camera: the last frame is resized to the 16 px the classifier was trained on
    high_32 = np.stack([square_image(24, 12, 32), square_image(2, 12, 32)])
    results = reward.score_batch(
        [
            RewardRequest(low, "lift"),
            RewardRequest(high, "lift", episode_id="e2"),
            RewardRequest(np.zeros((0, SIZE, SIZE, 3), np.uint8), "lift"),
            RewardRequest(high_32, "lift"),
        ]
    )
    assert not results[0].success and results[0].score_raw == 0 and results[0].parse_ok
    assert results[1].success and results[1].score_raw == 1 and results[1].episode_id == "e2"
    assert results[1].success_prob == pytest.approx(float(model.prob(high[-1:])[0]))
    assert results[1].progress == results[1].success_prob >= report["threshold"]
    assert results[1].frames_used == [1]
    assert not results[2].parse_ok and results[2].error == "empty" and not results[2].usable
    assert results[3].success
    rng = np.random.default_rng(1)
    state_model, state_report = train_classifier(
        [episode(rng, success=i % 2 == 0) for i in range(8)], ClassifierTrainConfig(steps=10, hidden_dims=[8])
    )
    state_reward = ClassifierReward(
        ClassifierRewardConfig(path=str(save_classifier(path.parent / "state", state_model, state_report)))
    )
    with pytest.raises(ConfigError, match="state classifier cannot score camera frames"):
        state_reward.score(RewardRequest(low, "lift"))
