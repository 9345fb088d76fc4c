"""``robot-rl-train``: the main job (hydra app). Overrides compose, e.g.
``robot-rl-train task=push policy=bc_chunk algo=bc experiment=quick``.
"""

from __future__ import annotations

from typing import Any

from robot_rl.cli.common import hydra_entry, to_dataclass


def _run(cfg: Any) -> None:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from robot_rl.trainer import Trainer

    config_yaml = OmegaConf.to_yaml(cfg)
    run_dir = HydraConfig.get().runtime.output_dir
    cfg.run_dir = run_dir
    train_cfg = to_dataclass(cfg)
    if train_cfg.train.role == "actor":
        from robot_rl.actor_learner import run_actor

        print(f"actor: {run_actor(train_cfg)}")
        return
    summary = Trainer(train_cfg, config_yaml=config_yaml).run()
    if summary.eval_result is not None:
        r = summary.eval_result
        lo, hi = r.success_ci95
        print(f"success {r.success_rate:.0%} (95% CI {lo:.0%}-{hi:.0%}) over {r.n_episodes} episodes")
    print(f"report: {summary.run_dir / 'report.md'}")


main = hydra_entry("train")(_run)

if __name__ == "__main__":
    main()
