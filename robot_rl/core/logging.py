"""Metric logging: a local ``metrics.jsonl`` always, wandb when enabled, namespaced keys.

wandb runs offline unless the user is logged in (``WANDB_API_KEY`` or a wandb entry in
``~/.netrc``) or sets ``WANDB_MODE`` themselves. The wandb run id is kept so a resumed run
continues the same wandb run.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

NAMESPACES = ("train/", "eval/", "loss/", "timing/", "real/", "charts/", "link/", "reward/")


def check_metric_names(metrics: dict[str, Any]) -> None:
    for key in metrics:
        if not key.startswith(NAMESPACES):
            raise ValueError(f"metric {key!r} is not namespaced; use one of {', '.join(NAMESPACES)}")


def wandb_mode(requested: str) -> str:
    """Resolve ``auto`` to online when the user is logged in (or WANDB_MODE says so), else offline."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    netrc = Path.home() / ".netrc"
    logged_in = bool(os.environ.get("WANDB_API_KEY")) or (
        netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")
    )
    return "online" if logged_in else "offline"


class MetricLogger:
    """Append metrics to ``<run_dir>/metrics.jsonl`` (one JSON object per call) and to wandb.

    Args:
        run_dir: output folder of the run.
        wandb_mode: "auto" | "online" | "offline" | "disabled".
        project: wandb project name.
        config: the resolved run config (logged to wandb once).
        run_id: wandb run id to resume (from a checkpoint), or None for a new run.
    """

    def __init__(
        self,
        run_dir: str | Path,
        wandb_mode: str = "disabled",
        project: str = "robot_rl",
        config: dict | None = None,
        run_id: str | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        self._file = open(self.path, "a", buffering=1)  # noqa: SIM115 (closed in close())  # line-buffered: a crash loses no full line
        self._wandb_run = None
        self.run_id = run_id
        mode = globals()["wandb_mode"](wandb_mode)
        if mode != "disabled":
            import wandb

            self._wandb_run = wandb.init(
                project=project,
                dir=str(self.run_dir),
                mode=mode,
                id=run_id,
                resume="allow" if run_id else None,
                config=config,
                reinit="finish_previous",
            )
            self.run_id = self._wandb_run.id
            # our "step" restarts per phase (imitation updates, then env steps): wandb's own step
            # must increase, so charts use "step" as a custom x axis instead
            self._wandb_run.define_metric("step")
            self._wandb_run.define_metric("*", step_metric="step")

    def log(self, metrics: dict[str, Any], step: int) -> None:
        check_metric_names(metrics)
        clean = {k: _to_builtin(v) for k, v in metrics.items()}
        self._file.write(json.dumps({"step": step, **clean}) + "\n")
        if self._wandb_run is not None:
            self._wandb_run.log({**clean, "step": step})

    def close(self) -> None:
        self._file.close()
        if self._wandb_run is not None:
            self._wandb_run.finish()
            self._wandb_run = None


def _to_builtin(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep them visible instead of dropping the line
    return value


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Read a ``metrics.jsonl`` file (skips a trailing partial line left by a crash)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
