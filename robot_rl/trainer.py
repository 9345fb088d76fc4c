"""The one training loop every algorithm runs in (ARCHITECTURE §3.3, ALGORITHMS.md §11.9).

Phases:

1. **demos**: scripted-expert demonstrations of the task (``demos.*``), with the images of the
   cameras the base policy sees when ``task.obs_mode`` has pixels (``ObsSpec.cameras``);
2. **imitation**: the base policy is trained on them with its own loss (``base.*``), or loaded
   from ``base.bundle``; ``algo=bc`` stops here;
3. **online** (``algo=residual|sac|rlpd``): env warm-up with ``algo.warmup_action`` → critic-only
   warm-up updates → collect one step → ``utd`` updates (the actor on the last) → evaluate every
   ``train.eval_every`` env steps (the first evaluation, at env step 0, is the untouched policy);
4. **finish**: final evaluation of the base and the refined policy on the same fixed seeds,
   bundle export, report.

A run resumes exactly: the checkpoint holds the policy and algorithm state (weights, optimizers,
target networks), both replay buffers, every RNG state, the step counters and the wandb run id.
Online checkpoints are taken at episode ends, so no simulator state needs saving.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from robot_rl.algos import ALGOS
from robot_rl.algos.bc import BC
from robot_rl.config import DemoConfig, TaskConfig, TrainConfig
from robot_rl.core import seeds
from robot_rl.core.checkpoint import CheckpointManager
from robot_rl.core.errors import ConfigError, DataError
from robot_rl.core.logging import MetricLogger
from robot_rl.core.replay import MixedSampler, ReplayBuffer
from robot_rl.core.seeding import capture_rng_state, restore_rng_state, seed_everything
from robot_rl.core.types import PIXELS_PREFIX, STATE_KEY, ActionSpec, ObsSpec
from robot_rl.data.demos import ChunkDataset, Episode, load_demos
from robot_rl.deploy.bundle import load_policy
from robot_rl.envs import expert_action
from robot_rl.envs.wrappers import BASE_ACTION_KEY, InterventionWrapper
from robot_rl.evaluation import EvalResult, evaluate
from robot_rl.policies import POLICIES
from robot_rl.rewards import REWARDS
from robot_rl.rewards.deferred import find_deferred_reward, pop_judged, relabel_terminal
from robot_rl.teleop import TELEOP

# config fields a resumed run may change; anything else must match the checkpoint's config
RESUMABLE_OVERRIDES = ("resume", "run_dir", "logger", "train", "eval")
PHASES = ("imitation", "online", "done")


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


def env_cameras(obs_space: gym.spaces.Dict) -> dict[str, tuple[int, int, int]]:
    """Camera name -> image shape ``(H, W, 3)`` of the ``pixels/<camera>`` keys of an observation space."""
    return {
        key[len(PIXELS_PREFIX) :]: tuple(int(d) for d in space.shape)  # type: ignore[misc]
        for key, space in obs_space.spaces.items()
        if key.startswith(PIXELS_PREFIX)
    }


def policy_takes_pixels(policy_cfg: Any) -> bool:
    """Whether a policy config has a camera encoder (``image_feature_dim``, e.g. ``diffusion``); other
    policies (``bc_chunk``) see the state only, whatever ``task.obs_mode`` renders."""
    return hasattr(policy_cfg, "image_feature_dim")


def collect_episodes(
    task: TaskConfig,
    demos: DemoConfig,
    progress: bool = False,
    on_episode: Callable[[int, Episode], None] | None = None,
    env: gym.Env | None = None,
    cameras: Sequence[str] | None = None,
) -> dict[str, int]:
    """Roll the scripted expert on the demo seeds ``seeds.demo_seed(i, demos.seed_offset)``; hand each
    kept episode to ``on_episode(i, episode)`` (``i``: the attempt; failures are dropped unless
    ``demos.keep_failures``).

    Episodes keep the images of ``cameras`` (``None``: every camera the env observes, i.e. those of
    ``task.cameras`` when ``task.obs_mode`` has pixels; ``()``: states only).
    """
    from tqdm.auto import tqdm

    own_env = env is None
    env = make_task_env(task) if env is None else env
    attempted = successes = kept = 0
    try:
        observed = env_cameras(env.observation_space)  # type: ignore[arg-type]
        if STATE_KEY not in env.observation_space.spaces:  # type: ignore[attr-defined]
            raise ConfigError(
                f"demonstrations record the state; task.obs_mode={task.obs_mode!r} has none "
                "(use task.obs_mode=state+pixels)"
            )
        cameras = sorted(observed) if cameras is None else sorted(cameras)
        missing = sorted(set(cameras) - set(observed))
        if missing:
            raise ConfigError(f"cameras {missing} are not observed (task.obs_mode={task.obs_mode!r})")
        for i in tqdm(range(demos.n_episodes), desc="demos", disable=None if progress else True, leave=False):
            obs, info = env.reset(seed=seeds.demo_seed(i, demos.seed_offset))
            states, actions, rewards, success, done = [], [], [], False, False
            frames: dict[str, list[np.ndarray]] = {cam: [] for cam in cameras}
            while not done:
                action = expert_action(env, noise=demos.expert_noise, hesitation=demos.hesitation)
                states.append(obs[STATE_KEY])
                for cam in cameras:
                    frames[cam].append(obs[PIXELS_PREFIX + cam])
                actions.append(action)
                obs, reward, terminated, truncated, info = env.step(action)
                rewards.append(reward)
                success = success or bool(info["is_success"])
                done = terminated or truncated
            attempted += 1
            successes += int(success)
            if success or demos.keep_failures:
                episode = Episode(
                    np.array(states),
                    np.array(actions),
                    np.array(rewards),
                    success,
                    info.get("task", ""),
                    final_state=np.asarray(obs[STATE_KEY]),
                    terminated=bool(terminated),
                    pixels={cam: np.stack(frames[cam]) for cam in cameras},  # [T, H, W, 3] uint8
                    final_pixels={cam: np.asarray(obs[PIXELS_PREFIX + cam]) for cam in cameras},
                )
                if on_episode is not None:
                    on_episode(i, episode)
                kept += 1
    finally:
        if own_env:
            env.close()
    return {"attempted": attempted, "successes": successes, "kept": kept}


def config_to_json(cfg: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def relabel_demo_base_actions(base_policy: Any, episode: Episode) -> np.ndarray:
    """The frozen base's actions ``[T+1, Da]`` on a demonstration's ``T + 1`` observations (state and,
    for a pixel base, its cameras' images), reset at the episode start as it is online."""
    missing = sorted(set(base_policy.obs_spec.cameras) - set(episode.pixels))
    if missing:
        raise DataError(f"the base policy sees camera(s) {missing}; the demonstrations have no such images")
    base_policy.reset()
    actions = [np.clip(base_policy.act(obs), -1.0, 1.0) for obs in episode.observations()]
    return np.stack(actions).astype(np.float32)


def _episode_state(episode: Episode) -> dict[str, Any]:
    """An episode's fields for a checkpoint (no copies: ``dataclasses.asdict`` would deep-copy images)."""
    return {f.name: getattr(episode, f.name) for f in dataclasses.fields(episode)}


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
    base_result: EvalResult | None = None
    env_steps: int = 0


class _AlgoPolicy:
    """``reset``/``act`` view of an online algorithm for :func:`evaluate` (deterministic actions)."""

    def __init__(self, algo: Any):
        self.algo = algo

    def reset(self) -> None:
        """The base's chunk queue is reset by the environment wrapper."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.algo.act(obs, deterministic=True)


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
                    f"task.obs_mode={cfg.task.obs_mode!r} (use state+pixels)"
                )
            state_dim = int(obs_space[STATE_KEY].shape[0])  # type: ignore[index]
            cameras = env_cameras(obs_space)  # type: ignore[arg-type]
            self.action_spec = ActionSpec.normalized(int(probe.action_space.shape[0]))  # type: ignore[index]
        finally:
            probe.close()
        # what the base policy sees: the state, plus the env's cameras if the policy has an image encoder
        self.obs_spec = ObsSpec(state_dim, cameras if policy_takes_pixels(cfg.policy) else {})
        if cfg.base.bundle:
            self.policy = load_policy(cfg.base.bundle, device=self.device)
            made = self.policy.obs_spec
            if (
                made.state_dim != state_dim
                or any(cameras.get(cam) != tuple(shape) for cam, shape in made.cameras.items())
                or self.policy.action_spec.dim != self.action_spec.dim
            ):
                raise ConfigError(
                    f"base.bundle={cfg.base.bundle} was made for state {made.state_dim}, cameras "
                    f"{made.cameras or 'none'}, action {self.policy.action_spec.dim}; the task has state "
                    f"{state_dim}, cameras {cameras or 'none'}, action {self.action_spec.dim}"
                )
            self.obs_spec = made  # the bundle's cameras (a state-only bundle ignores the task's images)
        else:
            self.policy = POLICIES.build(cfg.policy.name, cfg.policy, self.obs_spec, self.action_spec)
            self.policy = self.policy.to(self.device)
        self.imitation = BC(cfg.base, self.policy)
        self.algo_cls = ALGOS.get(cfg.algo.name)
        self.online = bool(getattr(self.algo_cls, "online", False))
        # EXPO-style algorithms keep training the base online (with their own loss and optimizer)
        self.trains_base = bool(getattr(self.algo_cls, "trains_base", False))
        self.algo: Any = None
        if self.online:
            self.algo = self.algo_cls(
                cfg.algo, self.obs_spec, self.action_spec, base_policy=self.policy, device=self.device
            )
        if cfg.teleop is not None and not getattr(self.algo_cls, "learns_executed_actions", False):
            learners = [n for n in ALGOS.names() if getattr(ALGOS.get(n), "learns_executed_actions", False)]
            raise ConfigError(
                f"teleop={cfg.teleop.name} stores the executed (human) action as the agent's action; "
                f"algo={cfg.algo.name} acts in another space. Use algo={'|'.join(learners)}"
            )
        self.phase = "imitation" if not cfg.base.bundle else ("online" if self.online else "done")
        self.step = 0  # imitation updates
        self.env_step = 0
        self.episode = 0
        self.online_buffer: ReplayBuffer | None = None
        self.prior_buffer: ReplayBuffer | None = None
        self.dataset: ChunkDataset | None = None
        self.demos: list[Episode] | None = None
        self.wandb_run_id: str | None = None
        self.history: list[dict[str, float]] = []  # online evaluations: env_step, success_rate
        self._last_checkpoint_bucket = 0
        self.received_seq = -1  # learner role: the last actor episode in this state (train.role=learner)
        # deferred rewards (set up by the online loop): the episode in progress and those awaiting a verdict
        self._deferred: Any = None
        self._held_steps: list[tuple] = []
        self._pending_episodes: dict[str, list[tuple]] = {}
        if cfg.resume:
            self._restore()

    # --- data ---

    def collect_demos(self) -> list[Episode]:
        """Episodes from ``demos.path`` (an episode store) or scripted-expert episodes on seeds
        ``seeds.demo_seed(i, demos.seed_offset)`` (see :func:`collect_episodes`)."""
        cameras = sorted(self.obs_spec.cameras)  # images only of the cameras the base policy sees
        if self.cfg.demos.path:
            path = self.cfg.demos.path
            episodes = load_demos(path, keep_failures=self.cfg.demos.keep_failures, cameras=cameras)
            if episodes and episodes[0].states.shape[1] != self.obs_spec.state_dim:
                raise DataError(
                    f"{path}: stored states have {episodes[0].states.shape[1]} dims, "
                    f"task {self.cfg.task.env_id} has {self.obs_spec.state_dim}"
                )
            for cam, shape in self.obs_spec.cameras.items():
                if episodes and episodes[0].pixels[cam].shape[1:] != tuple(shape):
                    raise DataError(
                        f"{path}: stored {cam!r} images are {episodes[0].pixels[cam].shape[1:]}, the policy "
                        f"sees {tuple(shape)} (task.image_size)"
                    )
            return episodes
        episodes = []
        env = make_env(self.cfg)
        try:
            collect_episodes(
                self.cfg.task,
                self.cfg.demos,
                self.cfg.logger.progress,
                on_episode=lambda _, ep: episodes.append(ep),
                env=env,
                cameras=cameras,
            )
        finally:
            env.close()
        return episodes

    def _make_online_env(self, render: bool = False) -> gym.Env:
        return self.algo_cls.wrap_env(make_env(self.cfg, render=render), self.policy)

    def _build_buffers(self) -> None:
        """Online replay from the wrapped env's observation space; prior replay from the demos."""
        cfg = self.cfg.algo
        env = self._make_online_env()
        shapes = {
            k: space.shape
            for k, space in env.observation_space.spaces.items()  # type: ignore[attr-defined]
            if not k.startswith("pixels/")
        }
        env.close()
        # Cal-QL-style algorithms need a finite Monte-Carlo return in every batch: they sample only
        # steps of closed episodes
        open_ok = not getattr(self.algo_cls, "needs_mc_return", False)
        make = lambda capacity: ReplayBuffer(  # noqa: E731
            capacity,
            shapes,
            action_dim=self.action_spec.dim,
            n_step=cfg.n_step,
            gamma=cfg.gamma,
            sample_open_episodes=open_ok,
        )
        self.online_buffer = make(cfg.buffer_capacity)
        demos = self.demos or []
        # HIL-SERL: intervention steps join the demos in the prior buffer, which grows like the online one
        hil_prior = self.cfg.teleop is not None and self.cfg.teleop.into_prior
        demo_steps = sum(len(e.actions) for e in demos)
        self.prior_buffer = make(max(demo_steps + (cfg.buffer_capacity if hil_prior else 0), cfg.n_step, 1))
        for ep in demos:
            if ep.final_state is None:
                raise ConfigError("demonstrations without a final observation cannot fill a replay buffer")
            states = np.concatenate([ep.states, ep.final_state[None]]).astype(np.float32)
            obs = {STATE_KEY: states}
            if BASE_ACTION_KEY in shapes:  # the frozen base re-run on the demo (with its images)
                obs[BASE_ACTION_KEY] = relabel_demo_base_actions(self.policy, ep)
            T = len(ep.actions)
            term = np.zeros(T, bool)
            term[-1] = ep.terminated
            self.prior_buffer.add_episode(
                {k: v[:-1] for k, v in obs.items()},
                ep.actions,
                ep.rewards.astype(np.float32),
                {k: v[1:] for k, v in obs.items()},
                terminated=term,
                truncated=~term & (np.arange(T) == T - 1),
                is_demo=True,
            )
        if demos:
            self.algo.fit_normalizer(np.concatenate([e.states for e in demos]))

    # --- checkpoints ---

    def _checkpoint_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "phase": self.phase,
            "imitation": self.imitation.state_dict(),  # the base policy's weights and its optimizer
            "rng": capture_rng_state({"trainer": self.rng}),
            "step": self.step,
            "env_step": self.env_step,
            "episode": self.episode,
            "history": self.history,
            "received_seq": self.received_seq,
            "wandb_run_id": self.wandb_run_id,
            "config": config_to_json(self.cfg),
        }
        if self.dataset is not None:
            # the dataset is a pure function of the demos (stored below): rebuilt on resume, so the
            # checkpoint holds every image once
            state["dataset"] = {
                "obs_horizon": self.cfg.policy.obs_horizon,
                "chunk_size": self.cfg.policy.chunk_size,
                "cameras": self.dataset.cameras,
            }
        if self.demos is not None:
            state["demos"] = [_episode_state(ep) for ep in self.demos]
        if self.algo is not None:
            state["algo"] = self.algo.state_dict()
        if self.online_buffer is not None and self.prior_buffer is not None:
            state["online_buffer"] = self.online_buffer.state_dict()
            state["prior_buffer"] = self.prior_buffer.state_dict()
        return state

    def save_checkpoint(self) -> Path:
        return self.checkpoints.save(self.step + self.env_step, self._checkpoint_state())

    def _restore(self) -> None:
        if self.checkpoints.latest() is None:
            raise ConfigError(f"resume=true but {self.checkpoints.directory} holds no checkpoint")
        state = self.checkpoints.load()
        diff = _first_difference(state["config"], config_to_json(self.cfg))
        if diff:
            raise ConfigError(f"cannot resume with a different config: {diff}")
        self.phase = state["phase"]
        self.received_seq = int(state.get("received_seq", -1))
        self.imitation.load_state_dict(state["imitation"])
        if "demos" in state:
            self.demos = [Episode(**ep) for ep in state["demos"]]
        if "dataset" in state:
            data = state["dataset"]
            if "obs_index" in data:  # checkpoints that stored the dataset's arrays
                self.dataset = ChunkDataset.from_state_dict(data)
            else:
                assert self.demos is not None
                self.dataset = ChunkDataset(
                    self.demos, data["obs_horizon"], data["chunk_size"], data["cameras"]
                )
        if self.algo is not None and "algo" in state:
            self.algo.load_state_dict(state["algo"])
        if "online_buffer" in state:
            self._build_buffers()
            assert self.online_buffer is not None and self.prior_buffer is not None
            self.online_buffer.load_state_dict(state["online_buffer"])
            self.prior_buffer.load_state_dict(state["prior_buffer"])
        restore_rng_state(state["rng"], {"trainer": self.rng})
        self.step, self.env_step, self.episode = (
            int(state["step"]),
            int(state["env_step"]),
            int(state["episode"]),
        )
        self.history = list(state["history"])
        self._last_checkpoint_bucket = self.env_step // self.cfg.train.checkpoint_every
        self.wandb_run_id = state["wandb_run_id"]

    # --- phases ---

    def run(self, until_step: int | None = None, until_env_step: int | None = None) -> RunSummary:
        """Run to the end, or stop (checkpointed, as a kill would) after ``until_step`` imitation
        updates or at the first episode end at or after ``until_env_step`` env steps."""
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
            if self.demos is None and (self.phase == "imitation" or self.online):
                t0 = time.perf_counter()
                self.demos = self.collect_demos()
                logger.log(
                    {
                        "train/demo_episodes": len(self.demos),
                        "timing/demo_collection_s": time.perf_counter() - t0,
                    },
                    step=0,
                )
            if self.phase == "imitation":
                if not self._imitation_phase(logger, until_step):
                    return RunSummary(self.run_dir, self.step, finished=False)
                self.phase = "online" if self.online else "done"
            if self.phase == "online" and cfg.train.role == "learner":
                from robot_rl.actor_learner import learner_phase

                learner_phase(self, logger)
                self.phase = "done"
            if self.phase == "online":
                if not self._online_phase(logger, until_env_step):
                    return RunSummary(self.run_dir, self.step, finished=False, env_steps=self.env_step)
                self.phase = "done"
            self.save_checkpoint()
            return self._finish(logger)
        finally:
            logger.close()

    def _imitation_phase(self, logger: MetricLogger, until_step: int | None) -> bool:
        from tqdm.auto import tqdm

        cfg = self.cfg
        if self.dataset is None:
            assert self.demos is not None
            self.dataset = ChunkDataset(
                self.demos,
                cfg.policy.obs_horizon,
                cfg.policy.chunk_size,
                cameras=sorted(self.obs_spec.cameras),
            )
            self.policy.fit_normalizer(self.dataset.states, self.dataset.actions)
        end = cfg.base.steps if until_step is None else min(until_step, cfg.base.steps)
        bar = tqdm(
            total=cfg.base.steps,
            initial=self.step,
            desc="imitation",
            disable=None if cfg.logger.progress else True,
        )
        t0, start = time.perf_counter(), self.step
        while self.step < end:
            batch = self.dataset.sample(cfg.base.batch_size, self.rng, self.device)
            metrics = self.imitation.update(batch)
            self.step += 1
            bar.update(1)
            if self.step % cfg.train.log_every == 0:
                metrics["timing/updates_per_s"] = (self.step - start) / max(time.perf_counter() - t0, 1e-9)
                logger.log(metrics, step=self.step)
            if self.step % cfg.train.checkpoint_every == 0:
                self.save_checkpoint()
        bar.close()
        if self.step < cfg.base.steps:
            self.save_checkpoint()
            return False
        return True

    def _evaluate(
        self, policy: Any, n_episodes: int, make: Any, video: bool = False, online: bool = False
    ) -> EvalResult:
        """The final evaluation on the held-out seeds, or (``online``) an in-training one on its own
        stream: no seed of either is ever a training or demo seed (robot_rl.core.seeds)."""
        cfg = self.cfg
        reset_seeds = (
            seeds.online_eval_seeds(n_episodes)
            if online
            else seeds.evaluation_seeds(n_episodes, cfg.eval.seed_offset)
        )
        return evaluate(
            policy,
            make,
            reset_seeds,
            video_path=self.run_dir / "rollout.mp4" if video and cfg.eval.video_episodes > 0 else None,
            video_episodes=cfg.eval.video_episodes,
            progress=cfg.logger.progress,
        )

    def _online_phase(self, logger: MetricLogger, until_env_step: int | None) -> bool:
        from tqdm.auto import tqdm

        cfg, acfg, algo = self.cfg, self.cfg.algo, self.algo
        if self.trains_base:
            self.policy.eval()  # acting mode; the algorithm updates its weights
            fresh = self.env_step == 0 and algo.updates == 0
            if fresh or not (self.run_dir / "base_bundle").exists():  # the imitation base, unchanged
                self.imitation.export_bundle(self.run_dir / "base_bundle", **self._bundle_meta())
        else:
            self.policy.requires_grad_(False).eval()  # the base is frozen from here on
        if self.online_buffer is None:
            self._build_buffers()
        assert self.online_buffer is not None and self.prior_buffer is not None
        sampler = MixedSampler(self.online_buffer, self.prior_buffer, acfg.prior_fraction)
        env = self._make_online_env()
        if cfg.teleop is not None:
            env = InterventionWrapper(env, TELEOP.build(cfg.teleop.name, cfg.teleop))
            env.episode = self.episode  # the device's schedule (e.g. decaying interventions) resumes too
        # a reward model that judges finished episodes in the background: their steps wait in
        # self._pending_episodes until the verdict arrives (robot_rl/rewards/deferred.py)
        self._deferred = find_deferred_reward(env)
        if self._deferred is not None:
            self._deferred.blocking = False
        self._held_steps, self._pending_episodes = [], {}
        total = cfg.train.env_steps
        bar = tqdm(
            total=total,
            initial=self.env_step,
            desc=f"{cfg.algo.name} env steps",
            disable=None if cfg.logger.progress else True,
        )
        if acfg.offline_updates and self.env_step == 0 and algo.updates == 0:
            self._offline_pretraining(logger)
        timing = (time.perf_counter(), self.env_step, algo.updates)
        try:
            # Evaluations and checkpoints happen between episodes: the frozen base's chunk queue is
            # shared by the training and evaluation environments, and resets at every episode start.
            while True:
                if not self.history or self.env_step - self.history[-1]["env_step"] >= cfg.train.eval_every:
                    self._online_eval(logger)  # the first one, at env step 0, is the untouched policy
                if self.env_step >= total:
                    break
                if until_env_step is not None and self.env_step >= until_env_step:
                    self.save_checkpoint()
                    return False
                obs, _ = env.reset(seed=seeds.train_seed(cfg.seed, self.episode))
                ep_return, ep_success, done, episode_start = 0.0, False, False, self.env_step
                bursts: list[list[tuple]] = []  # intervention steps of this episode, per burst
                while not done:
                    if self.env_step < acfg.warmup_env_steps:
                        action = algo.warmup_action(obs, self.rng)
                    else:
                        action = algo.act(obs, deterministic=False)
                    next_obs, reward, terminated, truncated, info = env.step(action)
                    if info.get("rerecord", False):  # the human discards this episode: nothing is kept
                        discarded = self.online_buffer.discard_open_episode() + len(self._held_steps)
                        self._held_steps = []
                        self.env_step += 1  # the robot did move; the budget counts it
                        bar.update(1)
                        logger.log({"train/rerecorded_steps": float(discarded + 1)}, step=self.env_step)
                        bursts = []
                        break
                    # the executed action: the human's while they intervene (stored as the agent's action)
                    executed = np.asarray(info.get("executed_action", action), dtype=np.float32)
                    self._store_step(
                        obs, executed, float(reward), next_obs, terminated, truncated, info, bursts
                    )
                    obs = next_obs
                    ep_return += float(reward)
                    ep_success = ep_success or bool(info.get("is_success", False))
                    done = terminated or truncated
                    self.env_step += 1
                    bar.update(1)
                    if self._deferred is not None:
                        if done and self._held_steps:
                            self._pending_episodes[str(info["reward_request_id"])] = self._held_steps
                            self._held_steps = []
                        self._store_judged_episodes(self._deferred.poll(), logger)
                    self._learn_after_env_step(sampler, logger, timing)
                    if self.env_step >= total and not done:
                        self.online_buffer.end_episode()  # budget spent mid-episode: close as a time limit
                        self._held_steps = []  # (an unjudged episode: nothing to learn from)
                        done = True
                self._end_episode(logger, ep_return, ep_success, info, bursts, self.env_step - episode_start)
                if self.env_step // cfg.train.checkpoint_every > self._last_checkpoint_bucket:
                    self._last_checkpoint_bucket = self.env_step // cfg.train.checkpoint_every
                    self.save_checkpoint()
            self._drain_judged_episodes(logger)
        finally:
            bar.close()
            env.close()
        return True

    def _store_judged_episodes(self, results: list[Any], logger: MetricLogger) -> None:
        """Store the episodes whose verdict arrived, relabelled with it; a flagged verdict is never a
        reward: that episode is dropped (counted)."""
        for steps, result in pop_judged(self._pending_episodes, results):
            metrics = {
                "reward/latency_ms": result.latency_ms,
                "reward/pending_episodes": len(self._pending_episodes),
            }
            if not result.usable:
                metrics["reward/unscored_episodes"] = 1.0
                logger.log(metrics, step=self.env_step)
                continue
            obs, actions, _, next_obs, terminated, _, intervening = zip(*steps, strict=True)
            rewards, term, trunc = relabel_terminal(len(steps), bool(terminated[-1]), result)
            keys = self.online_buffer.obs_shapes
            self.online_buffer.add_episode(
                {k: np.stack([o[k] for o in obs]) for k in keys},
                np.stack(actions),
                rewards,
                {k: np.stack([o[k] for o in next_obs]) for k in keys},
                terminated=term,
                truncated=trunc,
                is_intervention=np.asarray(intervening, bool),
            )
            if self.cfg.teleop is not None and self.cfg.teleop.into_prior:
                flags = np.asarray(intervening, bool)
                starts = np.flatnonzero(flags & ~np.concatenate([[False], flags[:-1]]))
                for start in starts:  # each contiguous intervention burst, with the relabelled rewards
                    end = start + int(np.argmin(np.append(flags[start:], False)))
                    self._add_burst_to_prior(
                        [
                            (obs[t], actions[t], rewards[t], next_obs[t], term[t], trunc[t], 0)
                            for t in range(start, end)
                        ]
                    )
            metrics.update(
                {"reward/judged_success": float(result.success), "reward/relabelled_episodes": 1.0}
            )
            logger.log(metrics, step=self.env_step)

    def _drain_judged_episodes(self, logger: MetricLogger, timeout_s: float = 60.0) -> None:
        """At the end of training: wait (bounded) for the verdicts still pending and store them."""
        if self._deferred is None:
            return
        t_end = time.monotonic() + timeout_s
        while self._pending_episodes and time.monotonic() < t_end:
            self._store_judged_episodes(self._deferred.poll(), logger)
            time.sleep(0.01)
        if self._pending_episodes:
            logger.log({"reward/unjudged_at_end": float(len(self._pending_episodes))}, step=self.env_step)

    def _store_step(
        self,
        obs: dict[str, np.ndarray],
        executed: np.ndarray,
        reward: float,
        next_obs: dict[str, np.ndarray],
        terminated: bool,
        truncated: bool,
        info: dict[str, Any],
        bursts: list[list[tuple]],
    ) -> None:
        """One env step into the online buffer; an intervention step is also kept for the prior buffer
        (``bursts``: this episode's intervention steps per burst, added at the episode end)."""
        assert self.online_buffer is not None
        intervening = bool(info.get("is_intervention", False))
        if self._deferred is not None:  # stored when the episode's verdict arrives
            self._held_steps.append((obs, executed, reward, next_obs, terminated, truncated, intervening))
            return
        self.online_buffer.add(
            obs, executed, reward, next_obs, terminated, truncated, is_intervention=intervening
        )
        if intervening:
            burst_id = int(info["intervention_id"])
            if not bursts or burst_id != bursts[-1][-1][-1]:
                bursts.append([])
            bursts[-1].append((obs, executed, reward, next_obs, terminated, truncated, burst_id))

    def _learn_after_env_step(self, sampler: MixedSampler, logger: MetricLogger, timing: tuple) -> None:
        """What follows each env step: the critic warm-up when the env warm-up ends, then ``utd``
        updates (the actor on the last); metrics every ``log_every`` env steps."""
        acfg, algo = self.cfg.algo, self.algo
        assert self.online_buffer is not None and self.prior_buffer is not None
        # with deferred rewards (and no demos) the buffers may still be empty: nothing to learn from yet
        has_data = bool(self.online_buffer.num_sampleable or self.prior_buffer.num_sampleable)
        if self.env_step == acfg.warmup_env_steps and has_data:
            if not self.prior_buffer.num_sampleable:  # no demos: statistics from warm-up data
                stored = min(self.env_step, len(self.online_buffer))
                algo.fit_normalizer(self.online_buffer.state_dict()["obs"][STATE_KEY][:stored])
            self._critic_warmup(sampler, logger)
        if self.env_step > acfg.warmup_env_steps and has_data:
            for g, batch in enumerate(sampler.sample_utd(acfg.batch_size, acfg.utd, self.rng, self.device)):
                metrics = algo.update(batch, update_actor=g == acfg.utd - 1)
            if self.env_step % self.cfg.train.log_every == 0:
                t0, start_step, start_updates = timing
                elapsed = max(time.perf_counter() - t0, 1e-9)
                metrics["timing/env_steps_per_s"] = (self.env_step - start_step) / elapsed
                metrics["timing/updates_per_s"] = (algo.updates - start_updates) / elapsed
                logger.log(metrics, step=self.env_step)

    def _end_episode(
        self,
        logger: MetricLogger,
        ep_return: float,
        ep_success: bool,
        info: dict[str, Any],
        bursts: list[list[tuple]],
        length: int,
    ) -> None:
        """Count the episode, move its intervention bursts into the prior buffer, log its statistics."""
        self.episode += 1
        metrics = {"train/episode_return": ep_return, "train/episode_success": float(ep_success)}
        if self.cfg.teleop is not None:
            if self.cfg.teleop.into_prior:
                for burst in bursts:
                    self._add_burst_to_prior(burst)
            if "interventions" in info and not info.get("rerecord"):  # not re-recorded or budget-cut
                metrics["train/interventions"] = float(info["interventions"])
                metrics["train/intervention_steps"] = float(info["intervention_steps"])
                metrics["train/intervention_rate"] = info["intervention_steps"] / max(length, 1)
        logger.log(metrics, step=self.env_step)

    def _add_burst_to_prior(self, burst: list[tuple]) -> None:
        """One intervention burst into the prior buffer as its own segment (is_intervention): n-step
        returns stay inside the burst, which bootstraps at its end unless the episode terminated there."""
        assert self.prior_buffer is not None
        obs, actions, rewards, next_obs, terminated, _, _ = zip(*burst, strict=True)
        keys = self.prior_buffer.obs_shapes
        term = np.zeros(len(burst), bool)
        term[-1] = terminated[-1]
        self.prior_buffer.add_episode(
            {k: np.stack([o[k] for o in obs]) for k in keys},
            np.stack(actions),
            np.asarray(rewards, np.float32),
            {k: np.stack([o[k] for o in next_obs]) for k in keys},
            terminated=term,
            truncated=~term & (np.arange(len(burst)) == len(burst) - 1),
            is_intervention=True,
        )

    def _offline_pretraining(self, logger: MetricLogger) -> None:
        """``algo.offline_updates`` updates on the prior (demo) buffer alone, before any env step; an
        algorithm may add its offline-only terms in ``offline_update`` (WSRL: Cal-QL)."""
        acfg = self.cfg.algo
        assert self.prior_buffer is not None
        if not self.prior_buffer.num_sampleable:
            raise ConfigError(
                "algo.offline_updates > 0 needs demonstrations (demos.n_episodes or demos.path)"
            )
        step = getattr(self.algo, "offline_update", self.algo.update)
        for i in range(acfg.offline_updates):
            metrics = step(self.prior_buffer.sample(acfg.batch_size, self.rng, self.device))
            if (i + 1) % self.cfg.train.log_every == 0:
                logger.log(
                    {f"{k}_offline": v for k, v in metrics.items()} | {"train/offline_update": i + 1},
                    step=self.env_step,
                )

    def _critic_warmup(self, sampler: MixedSampler, logger: MetricLogger) -> None:
        acfg = self.cfg.algo
        for i in range(acfg.critic_warmup_updates):
            metrics = self.algo.update(
                sampler.sample(acfg.batch_size, self.rng, self.device), update_actor=False
            )
            if (i + 1) % self.cfg.train.log_every == 0:
                logger.log(
                    {f"{k}_warmup" if k.startswith("loss/") else k: v for k, v in metrics.items()},
                    step=self.env_step,
                )

    def _online_eval(self, logger: MetricLogger) -> None:
        result = self._evaluate(
            _AlgoPolicy(self.algo), self.cfg.train.eval_episodes, self._make_online_env, online=True
        )
        self.history.append(
            {"env_step": self.env_step, "success_rate": result.success_rate, "return": result.mean_return}
        )
        logger.log(result.metrics("eval/"), step=self.env_step)

    def _bundle_meta(self) -> dict[str, Any]:
        cfg = self.cfg
        return {"control_hz": cfg.task.control_hz, "config_yaml": self.config_yaml, "task": cfg.task.env_id}

    def _finish(self, logger: MetricLogger) -> RunSummary:
        cfg = self.cfg
        self.policy.eval()
        n = cfg.eval.n_episodes
        make_base_env = lambda render=False: make_env(cfg, render=render)  # noqa: E731
        # the imitation base; an algorithm that trained the base online saved it at the online start
        base = load_policy(self.run_dir / "base_bundle", self.device) if self.trains_base else self.policy
        base_result = self._evaluate(base, n, lambda: make_base_env(not self.online), video=not self.online)
        results = {"base policy (imitation)": base_result}
        logger.log(base_result.metrics("eval/base_"), step=self.step + self.env_step)
        final = base_result
        meta = self._bundle_meta()
        if self.trains_base:  # the fine-tuned base on its own, deployable without the critic
            alone = self._evaluate(self.policy, n, make_base_env)
            results[f"fine-tuned base alone ({cfg.algo.name})"] = alone
            logger.log(alone.metrics("eval/finetuned_base_"), step=self.step + self.env_step)
            self.imitation.export_bundle(self.run_dir / "finetuned_base_bundle", **meta)
        if self.online:
            final = self._evaluate(
                _AlgoPolicy(self.algo), n, lambda: self._make_online_env(render=True), video=True
            )
            results[f"refined ({cfg.algo.name})"] = final
            logger.log(final.metrics("eval/"), step=self.step + self.env_step)
            bundle = self.algo.export_bundle(self.run_dir / "bundle", **meta)
            if not self.trains_base:
                self.imitation.export_bundle(self.run_dir / "base_bundle", **meta)
        else:
            bundle = self.imitation.export_bundle(self.run_dir / "bundle", **meta)
        (self.run_dir / "eval.json").write_text(
            json.dumps(
                {name: r.to_json() for name, r in results.items()} | {"history": self.history}, indent=2
            )
        )
        from robot_rl.report import write_report

        write_report(self.run_dir, cfg, results, self.history)
        return RunSummary(
            self.run_dir,
            self.step,
            finished=True,
            eval_result=final,
            bundle_path=bundle,
            base_result=base_result,
            env_steps=self.env_step,
        )
