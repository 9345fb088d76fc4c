"""The one training loop every algorithm runs in (ARCHITECTURE §3.3).

Phases: demonstrations → offline updates (``algo=bc`` trains the base policy here) → evaluation →
bundle + report. Online phases (warm-up, collect → update) attach to the same loop with the RL
algorithms. A run is resumable exactly: the checkpoint holds algorithm state (weights, optimizer),
the demonstration data, every RNG state, the step counter and the wandb run id.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from robot_rl.algos import ALGOS
from robot_rl.config import DemoConfig, TaskConfig, TrainConfig
from robot_rl.core.checkpoint import CheckpointManager
from robot_rl.core.errors import ConfigError
from robot_rl.core.logging import MetricLogger
from robot_rl.core.seeding import capture_rng_state, restore_rng_state, seed_everything
from robot_rl.core.types import STATE_KEY, ActionSpec, ObsSpec
from robot_rl.data.demos import ChunkDataset, Episode
from robot_rl.envs import expert_action
from robot_rl.evaluation import EvalResult, evaluate
from robot_rl.policies import POLICIES
from robot_rl.rewards import REWARDS

# config fields a resumed run may change; anything else must match the checkpoint's config
RESUMABLE_OVERRIDES = ("resume", "run_dir", "logger", "train", "eval")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda was requested but no CUDA device is available")
    return torch.device(name)


def make_task_env(task: TaskConfig, render: bool = False) -> gym.Env:
    return gym.make(task.env_id, render_mode="rgb_array" if render else None, **task.make_kwargs())


def make_env(cfg: TrainConfig, render: bool = False) -> gym.Env:
    """The task's environment with the run's reward model applied."""
    reward_model = REWARDS.build(cfg.reward.name, cfg.reward)
    return reward_model.wrap(make_task_env(cfg.task, render))


def collect_episodes(
    task: TaskConfig,
    demos: DemoConfig,
    progress: bool = False,
    on_episode: Callable[[int, Episode], None] | None = None,
    env: gym.Env | None = None,
) -> dict[str, int]:
    """Roll the scripted expert on seeds ``demos.seed_offset + i``; hand each kept episode to
    ``on_episode(index, episode)`` (failures are dropped unless ``demos.keep_failures``)."""
    from tqdm.auto import tqdm

    own_env = env is None
    env = make_task_env(task) if env is None else env
    attempted = successes = kept = 0
    try:
        for i in tqdm(range(demos.n_episodes), desc="demos", disable=not progress, leave=False):
            obs, info = env.reset(seed=demos.seed_offset + i)
            states, actions, rewards, success, done = [], [], [], False, False
            while not done:
                action = expert_action(env, noise=demos.expert_noise, hesitation=demos.hesitation)
                states.append(obs[STATE_KEY])
                actions.append(action)
                obs, reward, terminated, truncated, info = env.step(action)
                rewards.append(reward)
                success = success or bool(info["is_success"])
                done = terminated or truncated
            attempted += 1
            successes += int(success)
            if success or demos.keep_failures:
                episode = Episode(
                    np.array(states), np.array(actions), np.array(rewards), success, info.get("task", "")
                )
                if on_episode is not None:
                    on_episode(kept, episode)
                kept += 1
    finally:
        if own_env:
            env.close()
    return {"attempted": attempted, "successes": successes, "kept": kept}


def config_to_json(cfg: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def _first_difference(a: dict, b: dict, prefix: str = "") -> str | None:
    for key in sorted(set(a) | set(b)):
        if not prefix and key in RESUMABLE_OVERRIDES:
            continue
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            found = _first_difference(va, vb, f"{prefix}{key}.")
            if found:
                return found
        elif va != vb:
            return f"{prefix}{key} (checkpoint: {va!r}, now: {vb!r})"
    return None


@dataclass
class RunSummary:
    run_dir: Path
    steps: int
    finished: bool
    eval_result: EvalResult | None = None
    bundle_path: Path | None = None


class Trainer:
    """Builds env, policy and algorithm from a :class:`TrainConfig` and runs the phases."""

    def __init__(self, cfg: TrainConfig, config_yaml: str = ""):
        if not isinstance(cfg, TrainConfig):
            raise TypeError(f"Trainer takes a TrainConfig dataclass, got {type(cfg).__name__}")
        self.cfg = cfg
        self.config_yaml = config_yaml
        self.run_dir = Path(cfg.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(cfg.device)
        self.rng = seed_everything(cfg.seed)
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", keep=cfg.train.keep_checkpoints)

        probe = make_env(cfg)
        try:
            obs_space = probe.observation_space
            if STATE_KEY not in obs_space.spaces:  # type: ignore[attr-defined]
                raise ConfigError(
                    f"policy {cfg.policy.name!r} needs a 'state' observation; "
                    f"task.obs_mode={cfg.task.obs_mode!r}"
                )
            self.obs_spec = ObsSpec(int(obs_space[STATE_KEY].shape[0]))  # type: ignore[index]
            self.action_spec = ActionSpec.normalized(int(probe.action_space.shape[0]))  # type: ignore[index]
        finally:
            probe.close()
        self.policy = POLICIES.build(cfg.policy.name, cfg.policy, self.obs_spec, self.action_spec).to(
            self.device
        )
        self.algo = ALGOS.build(cfg.algo.name, cfg.algo, self.policy)
        self.step = 0
        self.dataset: ChunkDataset | None = None
        self.wandb_run_id: str | None = None
        if cfg.resume:
            self._restore()

    # --- data ---

    def collect_demos(self) -> list[Episode]:
        """Scripted-expert episodes on seeds ``demos.seed_offset + i`` (see :func:`collect_episodes`)."""
        episodes: list[Episode] = []
        env = make_env(self.cfg)
        try:
            collect_episodes(
                self.cfg.task,
                self.cfg.demos,
                self.cfg.logger.progress,
                on_episode=lambda _, ep: episodes.append(ep),
                env=env,
            )
        finally:
            env.close()
        return episodes

    # --- checkpoints ---

    def _checkpoint_state(self) -> dict[str, Any]:
        assert self.dataset is not None
        return {
            "algo": self.algo.state_dict(),
            "dataset": self.dataset.state_dict(),
            "rng": capture_rng_state({"trainer": self.rng}),
            "step": self.step,
            "wandb_run_id": self.wandb_run_id,
            "config": config_to_json(self.cfg),
        }

    def save_checkpoint(self) -> Path:
        return self.checkpoints.save(self.step, self._checkpoint_state())

    def _restore(self) -> None:
        if self.checkpoints.latest() is None:
            raise ConfigError(f"resume=true but {self.checkpoints.directory} holds no checkpoint")
        state = self.checkpoints.load()
        diff = _first_difference(state["config"], config_to_json(self.cfg))
        if diff:
            raise ConfigError(f"cannot resume with a different config: {diff}")
        self.algo.load_state_dict(state["algo"])
        self.dataset = ChunkDataset.from_state_dict(state["dataset"])
        restore_rng_state(state["rng"], {"trainer": self.rng})
        self.step = int(state["step"])
        self.wandb_run_id = state["wandb_run_id"]

    # --- phases ---

    def run(self, until_step: int | None = None) -> RunSummary:
        """Run to the end (or stop after ``until_step`` updates, checkpointed, as a kill would)."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        logger = MetricLogger(
            self.run_dir,
            wandb_mode=cfg.logger.wandb_mode,
            project=cfg.logger.project,
            config=config_to_json(cfg),
            run_id=self.wandb_run_id,
        )
        self.wandb_run_id = logger.run_id
        try:
            if self.dataset is None:
                t0 = time.perf_counter()
                episodes = self.collect_demos()
                self.dataset = ChunkDataset(episodes, cfg.policy.obs_horizon, cfg.policy.chunk_size)
                self.policy.fit_normalizer(self.dataset.states)
                logger.log(
                    {
                        "train/demo_episodes": len(episodes),
                        "train/demo_transitions": len(self.dataset),
                        "timing/demo_collection_s": time.perf_counter() - t0,
                    },
                    step=0,
                )
            end = cfg.train.offline_steps if until_step is None else min(until_step, cfg.train.offline_steps)
            bar = tqdm(
                total=cfg.train.offline_steps,
                initial=self.step,
                desc=f"{cfg.algo.name} updates",
                disable=not cfg.logger.progress,
            )
            t0, start = time.perf_counter(), self.step
            while self.step < end:
                batch = self.dataset.sample(cfg.algo.batch_size, self.rng, self.device)
                metrics = self.algo.update(batch)
                self.step += 1
                bar.update(1)
                if self.step % cfg.train.log_every == 0:
                    elapsed = time.perf_counter() - t0
                    metrics["timing/updates_per_s"] = (self.step - start) / max(elapsed, 1e-9)
                    logger.log(metrics, step=self.step)
                if self.step % cfg.train.checkpoint_every == 0:
                    self.save_checkpoint()
            bar.close()
            self.save_checkpoint()
            if self.step < cfg.train.offline_steps:
                return RunSummary(self.run_dir, self.step, finished=False)
            return self._finish(logger)
        finally:
            logger.close()

    def _finish(self, logger: MetricLogger) -> RunSummary:
        cfg = self.cfg
        seeds = [cfg.eval.seed_offset + i for i in range(cfg.eval.n_episodes)]
        self.policy.eval()
        result = evaluate(
            self.policy,
            lambda: make_env(cfg, render=cfg.eval.video_episodes > 0),
            seeds,
            video_path=self.run_dir / "rollout.mp4" if cfg.eval.video_episodes > 0 else None,
            video_episodes=cfg.eval.video_episodes,
            progress=cfg.logger.progress,
        )
        self.policy.train()
        logger.log(result.metrics("eval/"), step=self.step)
        (self.run_dir / "eval.json").write_text(json.dumps(result.to_json(), indent=2))
        bundle = self.algo.export_bundle(
            self.run_dir / "bundle",
            control_hz=cfg.task.control_hz,
            config_yaml=self.config_yaml,
            task=cfg.task.env_id,
        )
        from robot_rl.report import write_report

        write_report(self.run_dir, cfg, {"base policy (after imitation)": result})
        return RunSummary(self.run_dir, self.step, finished=True, eval_result=result, bundle_path=bundle)
