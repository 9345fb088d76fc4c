"""Deferred episode rewards: the relabelling rule by hand, the wrapper (reward 0 while acting, one
request per finished episode, results polled without blocking), and the trainer storing an episode
only when its verdict arrives — relabelled, or dropped when the verdict is flagged."""

from __future__ import annotations

import threading
import time

import gymnasium as gym
import numpy as np
import pytest

from robot_rl.rewards.deferred import DeferredRewardWrapper, find_deferred_reward, relabel_terminal
from robot_rl.rewards.interface import RewardResult, failed_result

pytestmark = pytest.mark.unit


def _verdict(success: bool, episode_id: str = "0") -> RewardResult:
    score = 5 if success else 2
    return RewardResult(
        score,
        score / 5,
        success,
        float(success),
        True,
        f"ANSWER: {score}",
        "judge",
        "",
        "",
        episode_id=episode_id,
    )


def test_relabel_a_judged_success_ends_the_episode_with_reward_one():
    rewards, term, trunc = relabel_terminal(3, terminated_by_env=False, result=_verdict(True))
    np.testing.assert_array_equal(rewards, [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(term, [False, False, True])
    np.testing.assert_array_equal(trunc, [False, False, False])


def test_relabel_a_judged_failure_keeps_the_time_limit_and_no_reward():
    rewards, term, trunc = relabel_terminal(3, terminated_by_env=False, result=_verdict(False))
    np.testing.assert_array_equal(rewards, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(term, [False, False, False])
    np.testing.assert_array_equal(trunc, [False, False, True])  # bootstraps: a time limit
    # an episode the env itself ended (e.g. a safety stop) stays terminal, still without reward
    _, term, trunc = relabel_terminal(2, terminated_by_env=True, result=_verdict(False))
    assert term[-1] and not trunc[-1]


def test_relabel_refuses_a_flagged_result():
    from robot_rl.rewards.interface import RewardRequest

    req = RewardRequest(np.zeros((1, 4, 4, 3), np.uint8), "lift", episode_id="7")
    flagged = failed_result(
        req, error="parse", raw_text="??", model_id="m", model_revision="", prompt_hash=""
    )
    with pytest.raises(ValueError, match="flagged"):
        relabel_terminal(2, False, flagged)


class _Counter(gym.Env):
    """A 4-step episode whose observation counts the steps; its own reward is 5 (never used)."""

    observation_space = gym.spaces.Dict({"state": gym.spaces.Box(-10, 10, (1,), np.float32)})
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    terminate_on_success = True

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return {"state": np.zeros(1, np.float32)}, {"task": "count to four"}

    def step(self, action):
        self.t += 1
        return {"state": np.full(1, self.t, np.float32)}, 5.0, False, self.t == 4, {"is_success": False}


class _SlowJudge:
    """Episode 0, 2, 4 ... succeed; episode 1 is unparsable; answers after ``delay`` seconds, and only
    once ``gate`` is set."""

    def __init__(self, delay: float = 0.02):
        self.delay, self.gate, self.seen = delay, threading.Event(), []

    def score_batch(self, reqs):
        self.gate.wait(10)
        time.sleep(self.delay)
        out = []
        for req in reqs:
            self.seen.append((req.episode_id, len(req.frames), req.mode, req.task))
            if req.episode_id == "1":
                out.append(
                    failed_result(
                        req,
                        error="parse",
                        raw_text="no answer",
                        model_id="judge",
                        model_revision="",
                        prompt_hash="",
                    )
                )
            else:
                out.append(_verdict(int(req.episode_id) % 2 == 0, req.episode_id))
        return out


def _frame(task) -> np.ndarray:
    return np.full((4, 4, 3), task.t, np.uint8)


def test_wrapper_acts_without_waiting_and_submits_each_finished_episode():
    judge = _SlowJudge()
    env = DeferredRewardWrapper(_Counter(), judge, _frame, blocking=False)
    assert find_deferred_reward(gym.wrappers.RecordEpisodeStatistics(env)) is env
    assert env.unwrapped.terminate_on_success is False  # the model says what succeeded, not the task
    env.reset()
    rewards = []
    for _ in range(4):
        _, r, _, truncated, info = env.step(np.zeros(1, np.float32))
        rewards.append(r)
    assert rewards == [0.0] * 4 and truncated and info["reward_request_id"] == "0"
    assert env.poll() == []  # the judge is still blocked: nothing waits for it
    judge.gate.set()
    t_end = time.monotonic() + 5
    results = []
    while not results and time.monotonic() < t_end:
        results = env.poll()
    assert [r.episode_id for r in results] == ["0"] and results[0].success
    assert judge.seen == [("0", 5, "terminal", "count to four")]  # reset frame + 4 steps
    env.close()


def test_blocking_wrapper_returns_the_verdict_as_the_last_reward():
    """Demo collection and evaluation envs: the finished episode is scored at once."""
    judge = _SlowJudge(delay=0.0)
    judge.gate.set()
    env = DeferredRewardWrapper(_Counter(), judge, _frame)  # blocking by default
    success = [0.0, 0.0, 0.0, 1.0]
    # episode 0: a success (reward 1, terminal); 1: a flagged verdict (no reward, counted); 2: a success
    for episode, expected in enumerate((success, [0.0] * 4, success)):
        env.reset()
        steps = [env.step(np.zeros(1, np.float32)) for _ in range(4)]
        assert [r for _, r, *_ in steps] == expected, episode
        _, _, terminated, truncated, info = steps[-1]
        assert terminated == (expected[-1] == 1.0) and truncated != terminated
        assert "reward_request_id" not in info
    assert info["reward_parse_failures"] == 1
    env.close()


@pytest.mark.sim
def test_trainer_stores_episodes_when_judged_and_drops_flagged_ones(tmp_path, monkeypatch):
    from robot_rl.trainer import Trainer
    from tests.conftest import make_train_config

    judge = _SlowJudge()
    judge.gate.set()
    original = Trainer._make_online_env

    def deferred_env(self, render=False):
        env = original(self, render)

        def frame(task):
            return np.zeros((4, 4, 3), np.uint8)

        return DeferredRewardWrapper(env, judge, frame)

    monkeypatch.setattr(Trainer, "_make_online_env", deferred_env)
    cfg = make_train_config(
        tmp_path,
        **{
            "algo": "sac",
            "algo.hidden_dims": "[32,32]",
            "algo.warmup_env_steps": 20,
            "algo.critic_warmup_updates": 2,
            "algo.batch_size": 16,
            "train.env_steps": 150,
            "train.eval_every": 1000,
            "train.eval_episodes": 1,
            "eval.n_episodes": 1,
        },
    )
    trainer = Trainer(cfg)
    summary = trainer.run()
    assert summary.finished
    # the training env's episodes (evaluation envs are wrapped too and also ask the judge)
    submitted = [str(i) for i in range(trainer._deferred.episodes)]
    assert len(submitted) >= 3, submitted  # 0 (success), 1 (flagged), 2 (success), ...
    horizon = {episode_id: n_frames - 1 for episode_id, n_frames, *_ in judge.seen}["0"]
    kept = [i for i in submitted if i != "1"]
    # every judged episode but the flagged one is in the buffer, relabelled: 1 at the end of a success
    assert len(trainer.online_buffer) == horizon * len(kept)
    state = trainer.online_buffer.state_dict()
    flat = {k: v for part in state.values() if isinstance(part, dict) for k, v in part.items()}
    assert float(np.sum(flat["raw_reward"])) == sum(int(i) % 2 == 0 for i in kept)
    assert int(np.sum(flat["terminated"])) == sum(int(i) % 2 == 0 for i in kept)
    assert not trainer._pending_episodes


def test_the_actor_sends_each_episode_when_judged_relabelled_and_never_a_flagged_one():
    """Actor/learner split: the actor acts on while episodes wait for their verdict (VerdictSender)."""
    from robot_rl.actor_learner import VerdictSender
    from robot_rl.core.serialization import tree_from_bytes

    class Outbox(list):
        def put(self, message):
            self.append(tree_from_bytes(message))

    judge = _SlowJudge()
    wrapper = DeferredRewardWrapper(_Counter(), judge, _frame)  # blocking by default ...
    outbox = Outbox()
    sender = VerdictSender(wrapper, outbox)
    assert wrapper.blocking is False  # ... the actor's is not
    for _ in range(3):  # episodes 0 (success), 1 (flagged), 2 (success), while the judge is held up
        obs, _ = wrapper.reset()
        steps = []
        for _ in range(4):
            next_obs, reward, terminated, truncated, info = wrapper.step(np.zeros(1, np.float32))
            steps.append(
                {"obs": obs, "next_obs": next_obs, "action": np.zeros(1), "reward": reward,
                 "terminated": terminated, "truncated": truncated, "is_intervention": False,
                 "intervention_id": -1}
            )  # fmt: skip
            obs = next_obs
            sender.poll()
        sender.finished(steps, {"return": 0.0, "success": 0.0}, info)
    assert outbox == [] and sorted(sender.held) == ["0", "1", "2"]  # nothing went out unjudged
    judge.gate.set()
    sender.drain(5.0)
    assert sender.held == {} and sender.flagged == 1 and len(outbox) == 2
    for episode in outbox:  # 0 and 2: judged successes, relabelled as relabel_terminal says
        np.testing.assert_array_equal(episode["reward"], [0.0, 0.0, 0.0, 1.0])
        np.testing.assert_array_equal(episode["terminated"], [False, False, False, True])
        np.testing.assert_array_equal(episode["truncated"], [False] * 4)
        assert episode["stats"]["return"] == 1.0 and episode["stats"]["judged_success"] == 1.0
        assert episode["stats"]["success"] == 0.0  # the simulator's truth is kept apart
    wrapper.close()
    # without a deferred reward, episodes go out as they finish
    plain = Outbox()
    VerdictSender(None, plain).finished(steps, {"return": 0.0, "success": 0.0}, {})
    assert len(plain) == 1
