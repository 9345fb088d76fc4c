"""The run report: a markdown summary, a learning-curve PNG, and links to the rollout video and bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robot_rl.core.logging import read_metrics
from robot_rl.evaluation import EvalResult


def plot_learning_curves(metrics_path: Path, out_path: Path) -> bool:
    """Plot every ``loss/*`` and ``eval/success_rate`` series against step; False if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    series: dict[str, tuple[list[int], list[float]]] = {}
    for row in rows:
        for key, value in row.items():
            if (key.startswith("loss/") or key == "eval/success_rate") and isinstance(value, (int, float)):
                xs, ys = series.setdefault(key, ([], []))
                xs.append(row["step"])
                ys.append(value)
    if not series:
        return False
    fig, axes = plt.subplots(1, len(series), figsize=(4 * len(series), 3), squeeze=False)
    for ax, (key, (xs, ys)) in zip(axes[0], sorted(series.items())):
        ax.plot(xs, ys, marker="." if len(xs) < 20 else None)
        ax.set_title(key)
        ax.set_xlabel("update")
        if key.startswith("loss/") and min(ys) > 0:
            ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return True


def plot_success_curve(history: list[dict[str, float]], out_path: Path, title: str) -> bool:
    """Evaluation success rate against environment steps (online training)."""
    if not history:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([h["env_step"] for h in history], [h["success_rate"] for h in history], marker="o")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return True


def write_report(
    run_dir: Path, cfg: Any, results: dict[str, EvalResult], history: list[dict[str, float]] | None = None
) -> Path:
    curve = run_dir / "learning_curve.png"
    if history:
        has_curve = plot_success_curve(history, curve, f"{cfg.algo.name} on {cfg.task.env_id}")
        plot_learning_curves(run_dir / "metrics.jsonl", run_dir / "losses.png")
    else:
        has_curve = plot_learning_curves(run_dir / "metrics.jsonl", curve)
    lines = [
        f"# robot_rl run report — {cfg.task.env_id}",
        "",
        f"base policy `{cfg.policy.name}`, algorithm `{cfg.algo.name}`, seed {cfg.seed}, "
        f"{cfg.demos.n_episodes} scripted demos (expert noise {cfg.demos.expert_noise}), "
        f"{cfg.train.env_steps if cfg.algo.name != 'bc' else 0} online env steps.",
        "",
        f"Evaluation on the held-out seeds {cfg.eval.seed_offset}.."
        f"{cfg.eval.seed_offset + cfg.eval.n_episodes - 1} (never a training, demo or in-training "
        "evaluation start state: robot_rl.core.seeds):",
        "",
        "| policy | success | 95 % CI | mean return | mean length |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lo, hi = r.success_ci95
        lines.append(
            f"| {name} | {r.success_rate:.0%} | {lo:.0%}–{hi:.0%} | {r.mean_return:.2f} "
            f"| {r.mean_length:.1f} |"
        )
    files = ["`bundle/` (policy bundle)", "`metrics.jsonl`", "`eval.json`"]
    if has_curve:
        files.append("`learning_curve.png`")
    if (run_dir / "rollout.mp4").is_file():
        files.append("`rollout.mp4` (evaluation rollout)")
    if history:
        lines += [
            "",
            "Success during training (on the in-training evaluation seeds, every "
            f"{cfg.train.eval_every} env steps, {cfg.train.eval_episodes} episodes):",
            "",
            "| env steps | success |",
            "|---|---|",
        ]
        lines += [f"| {int(h['env_step'])} | {h['success_rate']:.0%} |" for h in history]
        files.append("`base_bundle/` (the imitation base)")
        if (run_dir / "finetuned_base_bundle").is_dir():
            files.append("`finetuned_base_bundle/` (the base after fine-tuning, usable without the critic)")
    lines += ["", "Files: " + ", ".join(files)]
    if has_curve:
        lines += ["", "![learning curve](learning_curve.png)"]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
