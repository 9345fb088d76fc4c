"""Typed run configuration: the dataclasses hydra composes (schemas in the ConfigStore) and that
library code receives after ``OmegaConf.to_object`` at the CLI boundary.

Each group option has its own dataclass: tasks share :class:`TaskConfig`; policies, algorithms and
reward models define theirs next to their code (``PolicyConfig``/``AlgoConfig``/``RewardConfig``
subclasses). Validation happens in ``__post_init__`` and raises :class:`ConfigError` with one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from robot_rl.core.validation import check, check_choice, check_positive
from robot_rl.envs import ENV_IDS, ROBOSUITE_TASKS

OBS_MODES = ("state", "pixels", "state+pixels")
REWARD_TYPES = ("sparse", "dense")
CONTROLS = ("ee_delta", "joint_pos")
RANDOMIZATION_PROFILES = ("none", "default", "heavy")
DEVICES = ("auto", "cpu", "cuda")
CAMERAS = ("front", "wrist")  # camera names of the built-in tasks and the robosuite adapter


def check_seed_range(section: str, offset: int, n: int) -> None:
    """``<section>.seed_offset + i`` for i < n must stay inside its seed stream (robot_rl.core.seeds)."""
    from robot_rl.core.seeds import STREAM_SIZE

    check(
        offset >= 0 and offset + n <= STREAM_SIZE,
        f"{section}.seed_offset={offset} with {n} episodes leaves its seed stream [0, {STREAM_SIZE})",
    )


def known_env_ids() -> tuple[str, ...]:
    return (*ENV_IDS.values(), *(f"robot_rl/robosuite-{t}-v0" for t in ROBOSUITE_TASKS))


@dataclass(frozen=True)
class TaskConfig:
    """An environment and the knobs of its ``gymnasium.make`` call (docs/sim.md)."""

    name: str = "lift"
    env_id: str = "robot_rl/Lift-v0"
    obs_mode: str = "state"
    reward_type: str = "sparse"
    randomization: str = "none"
    control: str = "ee_delta"
    ee_yaw: bool = False  # ee_delta with a yaw-rate action (Da = 5) instead of position only (Da = 4)
    horizon: int = 100  # control steps per episode
    control_hz: float = 20.0  # control rate of the task, Hz (recorded in bundles)
    terminate_on_success: bool = True  # end the episode at success (sparse-reward RL, as ResFiT)
    # pixel observations (obs_mode with "pixels"): square images of image_size px from these cameras
    image_size: int = 84
    cameras: list[str] = field(default_factory=lambda: ["front"])

    def __post_init__(self) -> None:
        check_choice("task.env_id", self.env_id, known_env_ids())
        check_choice("task.obs_mode", self.obs_mode, OBS_MODES)
        check_choice("task.reward_type", self.reward_type, REWARD_TYPES)
        check_choice("task.randomization", self.randomization, RANDOMIZATION_PROFILES)
        check_choice("task.control", self.control, CONTROLS)
        check_positive("task.horizon", self.horizon)
        check_positive("task.control_hz", self.control_hz)
        check(8 <= self.image_size <= 480, f"task.image_size must be in [8, 480], got {self.image_size}")
        check(
            len(self.cameras) > 0 and len(set(self.cameras)) == len(self.cameras),
            f"task.cameras must be distinct camera names, got {list(self.cameras)}",
        )
        for cam in self.cameras:
            check_choice("task.cameras", cam, CAMERAS)

    def make_kwargs(self) -> dict[str, Any]:
        return {
            "obs_mode": self.obs_mode,
            "reward_type": self.reward_type,
            "randomization": self.randomization,
            "control": self.control,
            "horizon": self.horizon,
            "terminate_on_success": self.terminate_on_success,
            **({"ee_yaw": True} if self.ee_yaw else {}),  # only built-in MuJoCo tasks know this kwarg
            # camera kwargs only with pixels (state-only tasks such as point_reach do not take them)
            **(
                {"image_size": self.image_size, "cameras": tuple(self.cameras)}
                if "pixels" in self.obs_mode
                else {}
            ),
        }


@dataclass(frozen=True)
class DemoConfig:
    """Scripted-expert demonstrations collected at the start of a run."""

    path: str = ""  # an episode store (robot-rl-collect, LeRobot/robomimic import) instead of collecting
    n_episodes: int = 50
    expert_noise: float = 0.0  # std of Gaussian noise on the normalized expert action
    hesitation: float = 0.0  # per-step probability that the expert pauses
    keep_failures: bool = False
    seed_offset: int = 0  # demo attempt i resets with seeds.demo_seed(i, seed_offset) (robot_rl.core.seeds)

    def __post_init__(self) -> None:
        check_positive("demos.n_episodes", self.n_episodes)
        check_seed_range("demos", self.seed_offset, self.n_episodes)
        check_positive("demos.expert_noise", self.expert_noise, allow_zero=True)
        check(0.0 <= self.hesitation < 1.0, f"demos.hesitation must be in [0, 1), got {self.hesitation}")


@dataclass(frozen=True)
class EvalConfig:
    n_episodes: int = 50
    seed_offset: int = 0  # evaluation episodes use seeds seed_offset + i: the same list for every policy
    video_episodes: int = 1

    def __post_init__(self) -> None:
        check_positive("eval.n_episodes", self.n_episodes)
        check_seed_range("eval", self.seed_offset, self.n_episodes)
        check_positive("eval.video_episodes", self.video_episodes, allow_zero=True)


@dataclass(frozen=True)
class ImitationConfig:
    """How the base policy is trained on the demonstrations (``base.*``)."""

    bundle: str = ""  # a pre-trained base bundle to load instead of training one
    steps: int = 2000  # gradient updates
    lr: float = 1e-3
    batch_size: int = 256
    weight_decay: float = 1e-6
    grad_clip: float = 10.0  # max global gradient norm

    def __post_init__(self) -> None:
        check_positive("base.steps", self.steps, allow_zero=True)
        check_positive("base.lr", self.lr)
        check_positive("base.batch_size", self.batch_size)
        check_positive("base.weight_decay", self.weight_decay, allow_zero=True)
        check_positive("base.grad_clip", self.grad_clip)


@dataclass(frozen=True)
class LoopConfig:
    """Budgets and cadence of the training loop."""

    env_steps: int = 50_000  # online environment steps (online algorithms only)
    eval_every: int = 5000  # env steps between evaluations during online training
    eval_episodes: int = 20  # episodes per evaluation during training (final: eval.n_episodes)
    log_every: int = 100  # updates (imitation) / env steps (online) between metric lines
    checkpoint_every: int = 1000  # updates (imitation) / env steps (online, at episode ends)
    keep_checkpoints: int = 2
    # actor/learner split (docs/hil.md): "local" = one process; "learner" serves on `address` and
    # trains; "actor" acts (with teleop, if set) and streams episodes to the learner
    role: str = "local"
    address: str = "127.0.0.1:50051"
    authkey: str = "robot_rl"  # shared secret of the link (HMAC handshake); set your own off loopback
    weights_every: int = 50  # learner updates between weight publications
    actor_queue: int = 64  # episodes the actor keeps in memory; older unacknowledged ones live on disk only
    actor_hz: float = 0.0  # actor steps per second (a robot's control rate); 0 = as fast as it can

    def __post_init__(self) -> None:
        check_choice("train.role", self.role, ("local", "learner", "actor"))
        check(
            self.address.rpartition(":")[2].isdigit(),
            f"train.address must be host:port, got {self.address!r}",
        )
        check_positive("train.weights_every", self.weights_every)
        check_positive("train.actor_queue", self.actor_queue)
        check_positive("train.actor_hz", self.actor_hz, allow_zero=True)
        check_positive("train.env_steps", self.env_steps, allow_zero=True)
        check_positive("train.eval_every", self.eval_every)
        check_positive("train.eval_episodes", self.eval_episodes)
        check_positive("train.log_every", self.log_every)
        check_positive("train.checkpoint_every", self.checkpoint_every)
        check_positive("train.keep_checkpoints", self.keep_checkpoints)


@dataclass(frozen=True)
class LoggerConfig:
    """Where metrics go: always ``metrics.jsonl``; wandb per ``wandb_mode``."""

    name: str = "wandb"
    wandb_mode: str = "auto"  # auto | online | offline | disabled
    project: str = "robot_rl"
    progress: bool = True  # progress bars with ETA

    def __post_init__(self) -> None:
        check_choice("logger.wandb_mode", self.wandb_mode, ("auto", "online", "offline", "disabled"))


@dataclass(frozen=True)
class TrainConfig:
    """A whole run: task × policy × algo × reward × logger, plus loop budgets."""

    task: TaskConfig = field(default_factory=TaskConfig)
    policy: Any = None  # a PolicyConfig subclass chosen by ``policy=<name>``
    algo: Any = None  # an AlgoConfig subclass chosen by ``algo=<name>``
    reward: Any = None  # a RewardConfig subclass chosen by ``reward=<name>``
    teleop: Any = None  # a TeleopConfig subclass chosen by ``teleop=<name>``: interventions (HIL); None = off
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    demos: DemoConfig = field(default_factory=DemoConfig)
    base: ImitationConfig = field(default_factory=ImitationConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    seed: int = 0
    device: str = "auto"  # auto picks CUDA when available
    resume: bool = False
    run_dir: str = "."  # set by the CLI to hydra's output directory
    experiment: str = "default"

    def __post_init__(self) -> None:
        from robot_rl.algos import ALGOS
        from robot_rl.policies import POLICIES
        from robot_rl.rewards import REWARDS

        check_choice("device", self.device, DEVICES)
        for group, registry, value in (
            ("policy", POLICIES, self.policy),
            ("algo", ALGOS, self.algo),
            ("reward", REWARDS, self.reward),
        ):
            check(value is not None, f"{group} is not set; choose one of: {', '.join(registry.names())}")
            check_choice(f"{group}.name", value.name, tuple(registry.names()))
        if self.teleop is not None:
            from robot_rl.teleop import TELEOP

            check_choice("teleop.name", self.teleop.name, tuple(TELEOP.names()))
        chunk = getattr(self.policy, "chunk_size", 1)
        check(
            chunk <= self.task.horizon,
            f"policy.chunk_size={chunk} is longer than the task horizon task.horizon={self.task.horizon}",
        )
