"""``robot-rl-collect``: record scripted-expert demonstrations of a task.

``robot-rl-collect task=lift n_episodes=50 expert_noise=0.1 out=data/lift_demos`` appends the
episodes to an episode store (``docs/data.md``: one file per episode, written to a temporary name
and renamed, so a crash loses at most the episode in progress); failed episodes are dropped unless
``keep_failures=true``. Train on them with ``robot-rl-train demos.path=data/lift_demos``.

With ``task.obs_mode=state+pixels`` every episode also keeps the camera images ``pixels/<camera>``
(uint8 ``[T+1, H, W, 3]``, ``task.image_size`` square, cameras ``task.cameras``);
``compress=true`` deflates the episode files (rendered images shrink several-fold).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from robot_rl.cli.common import hydra_entry, to_dataclass
from robot_rl.config import DemoConfig, TaskConfig, check, check_positive


@dataclass(frozen=True)
class CollectConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    n_episodes: int = 50
    expert_noise: float = 0.0
    hesitation: float = 0.0
    keep_failures: bool = False
    seed_offset: int = 0  # attempt i resets with seeds.demo_seed(i, seed_offset) (robot_rl.core.seeds)
    out: str = ""  # output folder (default: <run dir>/demos)
    compress: bool = False  # zip-deflate episode files (worth it with pixels); fixed when a store is created
    run_dir: str = "."

    def __post_init__(self) -> None:
        check_positive("n_episodes", self.n_episodes)
        check_positive("expert_noise", self.expert_noise, allow_zero=True)
        check(0.0 <= self.hesitation < 1.0, f"hesitation must be in [0, 1), got {self.hesitation}")


def _run(cfg: Any) -> None:
    from hydra.core.hydra_config import HydraConfig

    from robot_rl.core import seeds
    from robot_rl.data.demos import episode_to_record
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.trainer import collect_episodes

    cfg.run_dir = HydraConfig.get().runtime.output_dir
    ccfg: CollectConfig = to_dataclass(cfg)
    out = Path(ccfg.out or Path(ccfg.run_dir) / "demos")
    store = EpisodeStore(
        out, create=True, fps=ccfg.task.control_hz, env_id=ccfg.task.env_id, compress=ccfg.compress
    )
    demos = replace(
        DemoConfig(),
        n_episodes=ccfg.n_episodes,
        expert_noise=ccfg.expert_noise,
        hesitation=ccfg.hesitation,
        keep_failures=ccfg.keep_failures,
        seed_offset=ccfg.seed_offset,
    )
    meta = {
        "env_id": ccfg.task.env_id,
        "expert_noise": ccfg.expert_noise,
        "hesitation": ccfg.hesitation,
        "obs_mode": ccfg.task.obs_mode,
    }

    def save(attempt: int, episode: Any) -> None:
        seed = seeds.demo_seed(attempt, ccfg.seed_offset)
        store.append(episode_to_record(episode, "scripted_expert", {**meta, "seed": seed}))

    stats = collect_episodes(ccfg.task, demos, progress=True, on_episode=save)
    print(
        f"{stats['kept']} episodes ({stats['successes']}/{stats['attempted']} successful) appended to {out} "
        f"(now {len(store)} episodes)"
    )


def register() -> None:
    from hydra.core.config_store import ConfigStore

    from robot_rl.cli.common import _writable

    ConfigStore.instance().store(name="schema_collect", node=_writable(CollectConfig))


main = hydra_entry("collect", register)(_run)

if __name__ == "__main__":
    main()
