"""``robot-rl-collect``: record scripted-expert demonstrations of a task.

``robot-rl-collect task=lift n_episodes=50 expert_noise=0.1 out=data/lift_demos`` writes one
``episode_<i>.npz`` per episode (written to a temporary name and renamed, so a crash loses at most
the episode in progress) plus ``meta.json``; failed episodes are dropped unless
``keep_failures=true``.
"""

from __future__ import annotations

import json
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
    seed_offset: int = 10_000
    out: str = ""  # output folder (default: <run dir>/demos)
    run_dir: str = "."

    def __post_init__(self) -> None:
        check_positive("n_episodes", self.n_episodes)
        check_positive("expert_noise", self.expert_noise, allow_zero=True)
        check(0.0 <= self.hesitation < 1.0, f"hesitation must be in [0, 1), got {self.hesitation}")


def _run(cfg: Any) -> None:
    import numpy as np
    from hydra.core.hydra_config import HydraConfig

    from robot_rl.core.serialization import write_atomic_bytes
    from robot_rl.trainer import collect_episodes

    cfg.run_dir = HydraConfig.get().runtime.output_dir
    ccfg: CollectConfig = to_dataclass(cfg)
    out = Path(ccfg.out or Path(ccfg.run_dir) / "demos")
    out.mkdir(parents=True, exist_ok=True)
    demos = replace(
        DemoConfig(),
        n_episodes=ccfg.n_episodes,
        expert_noise=ccfg.expert_noise,
        hesitation=ccfg.hesitation,
        keep_failures=ccfg.keep_failures,
        seed_offset=ccfg.seed_offset,
    )
    n_saved = 0

    def save(index: int, episode: Any) -> None:
        nonlocal n_saved
        import io

        buffer = io.BytesIO()
        np.savez(
            buffer,
            states=episode.states,
            actions=episode.actions,
            rewards=episode.rewards,
            success=np.array(episode.success),
            task=np.array(episode.task),
        )
        write_atomic_bytes(out / f"episode_{index:06d}.npz", buffer.getvalue())
        n_saved += 1

    stats = collect_episodes(ccfg.task, demos, progress=True, on_episode=save)
    meta = {
        "task": ccfg.task.env_id,
        "expert_noise": ccfg.expert_noise,
        "hesitation": ccfg.hesitation,
        "episodes": n_saved,
        **stats,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    print(f"{n_saved} episodes ({stats['successes']}/{stats['attempted']} successful) written to {out}")


def register() -> None:
    from hydra.core.config_store import ConfigStore

    from robot_rl.cli.common import _writable

    ConfigStore.instance().store(name="schema_collect", node=_writable(CollectConfig))


main = hydra_entry("collect", register)(_run)

if __name__ == "__main__":
    main()
