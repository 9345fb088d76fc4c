"""``robot-rl-eval``: evaluate a policy bundle on a task over a fixed seed list.

``robot-rl-eval bundle=path/to/bundle task=lift n_episodes=50`` writes ``eval.json`` (success rate
with a Wilson 95 % interval, mean return and length, per-seed success) and ``rollout.mp4``.
``task.randomization=default`` evaluates under domain randomization; ``inference_ms=50
actuation_ms=20`` under real-robot delays (``robot_rl.sim.latency.LatencyWrapper``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robot_rl.cli.common import UserError, hydra_entry, to_dataclass
from robot_rl.config import TaskConfig, check, check_positive


@dataclass(frozen=True)
class EvalRunConfig:
    bundle: str = ""  # path to a bundle folder
    task: TaskConfig = field(default_factory=TaskConfig)
    n_episodes: int = 50
    seed_offset: int = 0  # seeds seed_offset .. seed_offset + n_episodes - 1 (same list for every policy)
    video_episodes: int = 2
    # judge the policy under real-robot delays (robot_rl.sim.latency.LatencyWrapper), in milliseconds,
    # rounded up to whole control steps
    inference_ms: float = 0.0
    actuation_ms: float = 0.0
    obs_ms: float = 0.0
    device: str = "cpu"
    run_dir: str = "."

    def __post_init__(self) -> None:
        check(bool(self.bundle), "bundle=<path to a bundle folder> is required")
        check_positive("n_episodes", self.n_episodes)
        check_positive("video_episodes", self.video_episodes, allow_zero=True)
        for name in ("inference_ms", "actuation_ms", "obs_ms"):
            check_positive(name, getattr(self, name), allow_zero=True)


def _run(cfg: Any) -> None:
    import gymnasium as gym
    from hydra.core.hydra_config import HydraConfig

    import robot_rl
    from robot_rl.core.seeds import evaluation_seeds
    from robot_rl.evaluation import evaluate

    cfg.run_dir = HydraConfig.get().runtime.output_dir
    ecfg: EvalRunConfig = to_dataclass(cfg)
    policy = robot_rl.load_policy(ecfg.bundle, device=ecfg.device)
    run_dir = Path(ecfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    def make_env() -> gym.Env:
        render = "rgb_array" if ecfg.video_episodes > 0 else None
        env = gym.make(ecfg.task.env_id, render_mode=render, **ecfg.task.make_kwargs())
        if ecfg.inference_ms or ecfg.actuation_ms or ecfg.obs_ms:
            from robot_rl.sim.latency import LatencyWrapper

            env = LatencyWrapper.from_ms(
                env, ecfg.task.control_hz, ecfg.inference_ms, ecfg.actuation_ms, ecfg.obs_ms
            )
        return env

    probe = make_env()
    expected = policy.obs_spec.state_dim
    found = probe.observation_space["state"].shape[0]  # type: ignore[index]
    probe.close()
    if expected != found:
        raise UserError(
            f"bundle {ecfg.bundle} expects a state of size {expected}, task {ecfg.task.env_id} gives {found}"
        )
    seeds = evaluation_seeds(ecfg.n_episodes, ecfg.seed_offset)
    result = evaluate(
        policy,
        make_env,
        seeds,
        video_path=run_dir / "rollout.mp4",
        video_episodes=ecfg.video_episodes,
        progress=True,
    )
    latency = {"inference_ms": ecfg.inference_ms, "actuation_ms": ecfg.actuation_ms, "obs_ms": ecfg.obs_ms}
    (run_dir / "eval.json").write_text(
        json.dumps(
            {
                "bundle": ecfg.bundle,
                "task": ecfg.task.env_id,
                "randomization": ecfg.task.randomization,
                "latency": latency,
                **result.to_json(),
            },
            indent=2,
        )
    )
    lo, hi = result.success_ci95
    print(
        f"success {result.success_rate:.0%} (95% CI {lo:.0%}-{hi:.0%}) over {result.n_episodes} episodes; "
        f"mean return {result.mean_return:.2f}; results in {run_dir}"
    )


def register() -> None:
    from hydra.core.config_store import ConfigStore

    from robot_rl.cli.common import _writable

    ConfigStore.instance().store(name="schema_eval", node=_writable(EvalRunConfig))


main = hydra_entry("eval", register)(_run)

if __name__ == "__main__":
    main()
