"""The video + text reward-model stand-in: clip labelling, text features, the RoboReward-format output
through the shared parser, save/load, the env wrapper, and the benchmark's Spearman."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from robot_rl.benchmarks.rewards import spearman
from robot_rl.rewards.interface import RewardRequest, RewardResult
from robot_rl.rewards.standin import (
    COLOUR_LEXICON,
    NUM_FRAMES,
    TEXT_BUCKETS,
    Rollout,
    SpatialSoftmax,
    StandInReward,
    StandInRewardConfig,
    StandInRewardNet,
    clip_frames,
    counterfactual_task,
    gated_log_probs,
    init_colour_from_lexicon,
    load_standin,
    make_clips,
    save_standin,
    text_features,
)

pytestmark = pytest.mark.unit


def _rollout(steps=20, success=True) -> Rollout:
    n = steps + 1
    frames = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 8, 8, 3)).copy()
    rubric = np.minimum(1 + np.arange(n) // 5, 5)  # 1,1,1,1,1,2,...,5
    return Rollout(frames, rubric, "lift the red cube", success)


def test_counterfactual_swaps_the_colour_only():
    rng = np.random.default_rng(0)
    wrong = counterfactual_task("lift the red cube", rng)
    assert wrong is not None and wrong != "lift the red cube"
    assert wrong.startswith("lift the ") and wrong.endswith(" cube") and "red" not in wrong
    assert counterfactual_task("lift the cube", rng) is None


def test_text_features_are_a_deterministic_bag_of_words():
    a = text_features("Lift the red cube")
    assert a.shape == (TEXT_BUCKETS,) and a.sum() == 4 and (a == 1).sum() == 4  # no shared bucket
    np.testing.assert_array_equal(a, text_features("cube red the lift"))  # order-free, case-free
    assert not np.array_equal(a, text_features("lift the blue cube"))


def test_no_two_words_of_the_lift_instructions_share_a_bucket():
    from robot_rl.rewards.standin import COLOURS
    from robot_rl.sim.tasks.lift import OBJECTS, TEMPLATES

    words = {w for t in TEMPLATES for w in t.split() if "{" not in w} | set(COLOURS) | set(OBJECTS)
    buckets = text_features(" ".join(sorted(words)))
    assert (buckets == 1).sum() == len(words)


def test_spatial_softmax_finds_a_peak_by_hand():
    # one channel peaked at row 1, column 3 of a 3x5 map: x = -1 + 3·(2/4) = 0.5, y = -1 + 1·(2/2) = 0
    x = torch.full((1, 2, 3, 5), -1e4)
    x[0, 0, 1, 3] = 0.0
    x[0, 1] = 0.0  # flat channel: the centre
    np.testing.assert_allclose(SpatialSoftmax()(x).numpy(), [[0.5, 0.0, 0.0, 0.0]], atol=1e-6)


def test_clip_frames_are_uniform_and_keep_the_first_and_last():
    frames = _rollout().frames
    clip = clip_frames(frames, 14)  # frames 0..14, 8 of them
    assert clip.shape[0] == NUM_FRAMES and clip[0, 0, 0, 0] == 0 and clip[-1, 0, 0, 0] == 14
    short = clip_frames(frames, 2)  # 3 frames: the last one repeated up to 8
    assert short.shape[0] == NUM_FRAMES and short[-1, 0, 0, 0] == 2


def test_clip_labels_follow_the_rubric():
    clips = make_clips([_rollout()], seed=0, prefixes=3)
    kinds = [c.kind for c in clips]
    assert kinds == ["full", "prefix", "prefix", "prefix", "counterfactual"]
    ro = _rollout()
    for c in clips:
        if c.kind == "counterfactual":
            assert c.label == 1 and c.t_end == 20 and "red" not in c.task
        else:
            assert c.label == ro.rubric[c.t_end]
    assert clips[0].label == 5 and all(4 <= c.t_end <= 18 for c in clips[1:4])  # u in [0.2, 0.9]


def test_several_counterfactuals_per_clip_are_distinct_colours():
    clips = make_clips([_rollout()], seed=0, prefixes=1, counterfactual_prefixes=True, counterfactuals=3)
    wrong = [c for c in clips if c.kind == "counterfactual"]
    assert len(wrong) == 6 and all(c.label == 1 and "red" not in c.task for c in wrong)
    for t_end in {c.t_end for c in clips}:  # three different colours for each of the two clips
        assert len({c.task for c in wrong if c.t_end == t_end}) == 3
    # one per clip draws exactly what the benchmark's held-out clips always drew
    assert make_clips([_rollout()], seed=4) == make_clips([_rollout()], seed=4, counterfactuals=1)
    from robot_rl.core.errors import ConfigError

    with pytest.raises(ConfigError, match="counterfactuals must be in"):
        make_clips([_rollout()], counterfactuals=6)


def _backend() -> StandInReward:
    torch.manual_seed(0)
    return StandInReward(StandInRewardConfig(), model=StandInRewardNet(channels=8, hidden=16).eval())


def test_backend_answers_in_roboreward_format_and_flags_empty_clips():
    reward = _backend()
    frames = np.random.default_rng(0).integers(0, 255, (12, 16, 16, 3), dtype=np.uint8)
    res = reward.score(RewardRequest(frames, "lift the red cube", episode_id="e1"))
    assert isinstance(res, RewardResult) and res.parse_ok and res.usable
    assert res.raw_text == f"ANSWER: {res.score_raw}" and 1 <= res.score_raw <= 5
    assert res.progress == {1: 0.0, 2: 0.25, 3: 0.5, 4: 0.75, 5: 1.0}[res.score_raw]
    assert res.success == (res.score_raw == 5) and 0.0 <= res.success_prob <= 1.0
    assert res.frames_used[0] == 0 and res.frames_used[-1] == 11 and res.episode_id == "e1"
    empty = reward.score(RewardRequest(np.zeros((0, 16, 16, 3), np.uint8), "x"))
    assert not empty.usable and empty.error == "empty"


def test_save_load_round_trip(tmp_path):
    reward = _backend()
    save_standin(tmp_path / "m", reward.model, {"channels": 8, "hidden": 16})
    model, _ = load_standin(tmp_path / "m")
    frames = torch.zeros(2, NUM_FRAMES, 16, 16, 3, dtype=torch.uint8)
    text = torch.from_numpy(np.stack([text_features("a b"), text_features("c")]))
    with torch.no_grad():
        assert torch.equal(model(frames, text), reward.model(frames, text))
    from robot_rl.core.errors import ConfigError

    with pytest.raises(ConfigError, match="is not a stand-in reward model"):
        load_standin(tmp_path)
    import json

    meta_file = tmp_path / "m" / "standin.json"
    meta_file.write_text(json.dumps({"channels": 8, "hidden": 16}))  # written before arch_version
    with pytest.raises(ConfigError, match="version-1 stand-in reward model"):
        load_standin(tmp_path / "m")


class _Judge:
    """Says 'success' (5) once the clip has at least ``at`` frames, 2 before; on clips of 4 frames
    ``at_four`` (default: unparsable text)."""

    def __init__(self, at: int, at_four: str = "no idea"):
        self.at, self.at_four = at, at_four

    def score(self, req):
        n = len(req.frames)
        text = self.at_four if n == 4 else f"ANSWER: {5 if n >= self.at else 2}"
        from robot_rl.rewards.vlm import result_from_text

        score, progress, success = result_from_text(text)
        return RewardResult(
            score, progress, success, float(success), score is not None, text, "judge", "", ""
        )


@pytest.mark.sim
def test_video_reward_wrapper_rewards_and_ends_on_the_models_verdict():
    pytest.importorskip("mujoco")
    import gymnasium as gym

    from robot_rl.rewards.standin import VideoRewardWrapper

    env = VideoRewardWrapper(
        gym.make("robot_rl/Lift-v0", terminate_on_success=True), _Judge(at=7), score_every=3
    )
    env.reset(seed=0)
    rewards, infos = [], []
    for _ in range(6):
        _, r, terminated, _, info = env.step(np.zeros(4, np.float32))
        rewards.append(r)
        infos.append(info)
        if terminated:
            break
    # scored at steps 3 (4 frames: unparsable, not a reward) and 6 (7 frames: success -> 1, episode ends)
    assert rewards == [0.0] * 5 + [1.0] and terminated
    assert infos[-1]["reward_parse_failures"] == 1 and infos[-1]["reward_score"] == 5
    assert infos[-1]["is_success"] is False  # the simulator's truth is kept
    env.close()


@pytest.mark.sim
def test_potential_based_shaping_by_hand():
    pytest.importorskip("mujoco")
    import gymnasium as gym

    from robot_rl.rewards.standin import VideoRewardWrapper

    lift = gym.make("robot_rl/Lift-v0", terminate_on_success=True)
    env = VideoRewardWrapper(
        lift, _Judge(at=7, at_four="ANSWER: 3"), score_every=3, shaping=True, shaping_gamma=0.5
    )
    env.reset(seed=0)
    rewards = [env.step(np.zeros(4, np.float32))[1] for _ in range(6)]
    # Φ = 0 until step 3 scores 3 (progress 0.5): r3 = 0.5·0.5 − 0 = 0.25; steps 4-5 hold Φ = 0.5:
    # 0.5·0.5 − 0.5 = −0.25; step 6 scores 5: 1 (success) + 0.5·1.0 − 0.5 = 1.0
    np.testing.assert_allclose(rewards, [0.0, 0.0, 0.25, -0.25, -0.25, 1.0])
    env.close()


def test_spearman_by_hand():
    assert spearman(np.array([1, 2, 3]), np.array([10, 20, 30])) == pytest.approx(1.0)
    assert spearman(np.array([1, 2, 3]), np.array([3, 2, 1])) == pytest.approx(-1.0)
    # ties get average ranks: y ranks (0.5, 0.5, 2) vs x ranks (0, 1, 2): rho = 0.866...
    assert spearman(np.array([1, 2, 3]), np.array([1, 1, 5])) == pytest.approx(np.sqrt(3) / 2)
    assert spearman(np.array([1, 2, 3]), np.array([4, 4, 4])) == 0.0


def test_standin_config_is_a_reward_option():
    from robot_rl.rewards import REWARDS

    assert "standin" in REWARDS.names() and REWARDS.config_cls("standin")().name == "standin"
    assert replace(StandInRewardConfig(), score_every=2).score_every == 2


@pytest.mark.sim
def test_rollouts_are_recorded_past_the_first_success():
    pytest.importorskip("mujoco")
    from robot_rl.rewards.standin import HOLD_STEPS, IMAGE, collect_rollouts

    (ro,) = collect_rollouts(1, seed=0, max_noise=0.0)  # the noiseless expert lifts the cube
    first = int(np.argmax(ro.rubric == 5))
    assert ro.success and ro.rubric[first] == 5
    assert len(ro.frames) == len(ro.rubric) == first + HOLD_STEPS + 1  # the reset frame, then one per step
    assert ro.frames.shape[1:] == (IMAGE, IMAGE, 3) and ro.rubric[-1] == 5  # still held up


@pytest.mark.sim
def test_noisy_successes_are_held_without_noise_and_end_in_success():
    pytest.importorskip("mujoco")
    from robot_rl.rewards.standin import HOLD_STEPS, collect_rollouts

    rollouts = collect_rollouts(4, seed=1, max_noise=1.2)
    assert any(ro.success for ro in rollouts)
    for ro in rollouts:
        assert ro.success == (ro.rubric[-1] == 5)  # a success video ends in success
        if (ro.rubric == 5).any():
            first = int(np.argmax(ro.rubric == 5))
            assert (ro.rubric[first:] == 5).all() and len(ro.rubric) - 1 - first <= HOLD_STEPS


def test_rewards_benchmark_rejects_a_bad_counterfactual_count_before_rendering(capsys):
    from robot_rl.benchmarks import rewards

    assert rewards.run(["--counterfactuals=6"]) == 2
    assert "--counterfactuals must be in [0, 5]" in capsys.readouterr().err


def test_gated_mixture_by_hand():
    """p = g·q + (1 − g)·[k = 1]: q = (0.5, 0.2, 0.1, 0.1, 0.1) and g = sigmoid(0) = 0.5 give
    (0.75, 0.1, 0.05, 0.05, 0.05); g -> 0 (the named object is not in view) gives score 1 for sure."""
    q = torch.tensor([[0.5, 0.2, 0.1, 0.1, 0.1]] * 2)
    p = gated_log_probs(q.log(), torch.tensor([0.0, -40.0])).exp()
    assert torch.allclose(p[0], torch.tensor([0.75, 0.1, 0.05, 0.05, 0.05]))
    assert torch.allclose(p[1], torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0]), atol=1e-12)
    assert torch.allclose(p.sum(1), torch.ones(2))


def test_model_answers_normalized_log_probabilities():
    """forward returns log p of the gated mixture, so softmax(forward) = exp(forward) (the back-end and
    predict_probs read it with a softmax)."""
    torch.manual_seed(0)
    model = StandInRewardNet(channels=4, hidden=8)
    frames = torch.randint(0, 256, (3, NUM_FRAMES, 16, 16, 3), dtype=torch.uint8)
    tasks = ("lift the red cube", "lift the blue cube", "x")
    text = torch.from_numpy(np.stack([text_features(t) for t in tasks]))
    log_p = model(frames, text)
    assert torch.allclose(log_p.exp().sum(1), torch.ones(3), atol=1e-6)
    assert torch.allclose(torch.softmax(log_p, -1), log_p.exp(), atol=1e-6)


def test_the_named_colour_starts_from_the_lexicon():
    """The text -> colour layers are fit to the colour-word lexicon before training: each instruction's
    predicted colour is its word's RGB (within 0.05), whatever else the sentence says."""
    torch.manual_seed(0)
    model = StandInRewardNet(channels=4, hidden=8)
    tasks = ["lift the red cube", "pick up the blue block and raise it", "grasp the orange cube"]
    assert init_colour_from_lexicon(model, tasks) < 1e-3
    with torch.no_grad():
        colours = torch.sigmoid(
            model.colour(model.text(torch.from_numpy(np.stack([text_features(t) for t in tasks]))))
        )
    expected = torch.tensor([COLOUR_LEXICON["red"], COLOUR_LEXICON["blue"], COLOUR_LEXICON["orange"]])
    assert torch.allclose(colours, expected, atol=0.05), colours
    assert np.isnan(init_colour_from_lexicon(model, ["lift the cube"]))  # no colour word: nothing to fit


def test_the_lexicon_names_the_simulators_colours_in_its_order():
    """Counterfactual draws index COLOURS, so its order is part of a seeded run."""
    sim_base = pytest.importorskip("robot_rl.sim.base", reason="mujoco not installed")
    assert tuple(sim_base.COLOURS) == tuple(COLOUR_LEXICON)
