"""Deferred episode rewards: a slow reward model judges each finished episode in the background, and the
learner relabels the episode's transitions when the verdict arrives (ALGORITHMS §8, "where rewards plug
in": episodes pending until scored).

:class:`DeferredRewardWrapper` records a camera frame every step and returns reward 0; when an episode
ends it submits the whole video (``mode="terminal"``) to an
:class:`~robot_rl.rewards.async_scorer.AsyncRewardScorer` and puts the request's id in
``info["reward_request_id"]``. The trainer holds that episode's transitions aside and, as results come
back (``poll``), stores them with the verdict as a sparse terminal reward (:func:`relabel_terminal`); a
flagged result (parse failure, timeout, model error) is never a reward: the episode is dropped from
training and counted. Acting never waits for the model. Every other env (demo collection,
evaluation) scores its finished episodes at once instead (``blocking``) and returns the verdict as the
last step's reward. The task's own success-termination is turned off (the model, not the simulator,
says what succeeded), so every episode runs to its time limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np

from robot_rl.core.errors import ConfigError
from robot_rl.rewards.async_scorer import AsyncRewardScorer
from robot_rl.rewards.interface import RewardRequest, RewardResult


def relabel_terminal(
    n_steps: int, terminated_by_env: bool, result: RewardResult
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rewards, terminated and truncated flags ``[T]`` of a finished episode from its verdict: reward 1
    and a terminal last step when the model judged it a success (nothing after it is valued), else
    reward 0 everywhere and the last step ends as it did in the env (a time limit bootstraps). Call
    only with a usable result."""
    if not result.usable:
        raise ValueError(f"relabel_terminal: result {result.episode_id!r} is flagged ({result.error})")
    rewards = np.zeros(n_steps, np.float32)
    terminated = np.zeros(n_steps, bool)
    truncated = np.zeros(n_steps, bool)
    if result.success:
        rewards[-1] = 1.0
    terminated[-1] = result.success or terminated_by_env
    truncated[-1] = not terminated[-1]
    return rewards, terminated, truncated


def pop_judged(held: dict[str, Any], results: list[RewardResult]) -> Iterator[tuple[Any, RewardResult]]:
    """``(held episode, its result)`` for each result whose episode ``held`` keeps (keyed by request id),
    popped from ``held`` as it is yielded; flagged results included (check ``result.usable``). Results
    of episodes not held are ignored."""
    for result in results:
        episode = held.pop(result.episode_id, None)
        if episode is not None:
            yield episode, result


class DeferredRewardWrapper(gym.Wrapper):
    """See the module docstring. ``model`` is a RewardModel (``score_batch``); ``frame(task)`` returns the
    uint8 ``[H, W, 3]`` image of the unwrapped task's current state (see :func:`front_camera`)."""

    def __init__(
        self,
        env: gym.Env,
        model: Any,
        frame: Any,
        max_pending: int = 64,
        timeout_s: float = 0.0,
        fps: float = 10.0,
        blocking: bool = True,
    ):
        super().__init__(env)
        env.unwrapped.terminate_on_success = False
        self.model, self.frame, self.fps = model, frame, float(fps)
        # blocking (every env but the trainer's online one: demos, evaluation): score the finished
        # episode at once and return the verdict as the last step's reward; the trainer's online loop
        # sets False and relabels when the result arrives
        self.blocking = bool(blocking)
        self.unscored = 0  # blocking mode: flagged verdicts (reward 0, never a success)
        self.scorer = AsyncRewardScorer(model, max_pending=max_pending, timeout_s=timeout_s)
        self.unsent: list[RewardRequest] = []  # the scorer's queue was full: retried on every poll
        self.episodes = 0

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self.frames = [self.frame(self.env.unwrapped)]
        self.task = str(info.get("task", ""))
        return obs, info

    def step(self, action: Any):
        obs, _, terminated, truncated, info = self.env.step(action)
        self.frames.append(self.frame(self.env.unwrapped))
        if terminated or truncated:
            request = RewardRequest(
                np.stack(self.frames), self.task, mode="terminal", fps=self.fps, episode_id=str(self.episodes)
            )
            self.episodes += 1
            if self.blocking:
                (result,) = self.model.score_batch([request])
                self.unscored += int(not result.usable)
                reward = float(result.usable and result.success)
                terminated = terminated or reward > 0  # as relabel_terminal: a judged success is terminal
                info = {**info, "reward_score": result.score_raw, "reward_parse_failures": self.unscored}
                return obs, reward, terminated, truncated and not terminated, info
            if not self.scorer.submit(request):
                self.unsent.append(request)
            info = {**info, "reward_request_id": request.episode_id}
        return obs, 0.0, terminated, truncated, info

    def poll(self) -> list[RewardResult]:
        """Results finished since the last call (never blocks); resubmits requests a full queue refused."""
        while self.unsent and self.scorer.submit(self.unsent[0]):
            self.unsent.pop(0)
        return self.scorer.poll()

    @property
    def pending(self) -> int:
        return self.scorer.pending + len(self.unsent)

    def close(self) -> None:
        self.scorer.close()
        super().close()


def front_camera(env: gym.Env, size: int) -> Any:
    """A ``frame`` function rendering the task's front camera at ``size``² (ConfigError when the task
    cannot render)."""
    if not hasattr(env.unwrapped, "render_camera"):
        raise ConfigError(f"{type(env.unwrapped).__name__} cannot render frames for a video reward model")
    return lambda task: task.render_camera("front", size, size)


def find_deferred_reward(env: gym.Env) -> DeferredRewardWrapper | None:
    """The DeferredRewardWrapper in ``env``'s wrapper chain, if there is one."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, DeferredRewardWrapper):
            return env
        env = env.env
    return None
