import json
import random

import numpy as np
import pytest
import torch

from robot_rl.core.logging import MetricLogger, check_metric_names, read_metrics, wandb_mode
from robot_rl.core.seeding import capture_rng_state, restore_rng_state, seed_everything
from robot_rl.evaluation import wilson_interval

pytestmark = pytest.mark.unit


def test_wilson_interval_by_hand():
    # p = 0.5, n = 10, z = 1.96: centre (0.5 + 0.19208) / 1.38416 = 0.5,
    # half = 1.96 * sqrt(0.025 + 0.009604) / 1.38416 = 0.26340
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.5 - 0.26340, abs=1e-4) and hi == pytest.approx(0.5 + 0.26340, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_metric_names_must_be_namespaced(tmp_path):
    check_metric_names({"loss/bc": 1.0, "eval/success_rate": 0.5})
    with pytest.raises(ValueError, match="'success' is not namespaced"):
        check_metric_names({"success": 1.0})
    logger = MetricLogger(tmp_path, wandb_mode="disabled")
    logger.log({"loss/bc": torch.tensor(0.25), "train/x": float("nan")}, step=3)
    logger.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "loss/bc"')  # a crash mid-line
    assert read_metrics(tmp_path / "metrics.jsonl") == [{"step": 3, "loss/bc": 0.25, "train/x": "nan"}]
    json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])


def test_wandb_is_offline_unless_logged_in(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode("auto") == "disabled"
    assert wandb_mode("offline") == "offline"


def test_rng_capture_restore_reproduces_every_stream():
    gen = seed_everything(3)
    state = capture_rng_state({"g": gen})
    first = (random.random(), np.random.rand(), torch.rand(1).item(), gen.random())
    restore_rng_state(state, {"g": gen})
    assert (random.random(), np.random.rand(), torch.rand(1).item(), gen.random()) == first


def test_wandb_gets_a_custom_step_axis(monkeypatch, tmp_path):
    """Phases restart "step" (imitation updates, then env steps); wandb's own step must not go back."""
    import sys
    import types

    calls = []

    class FakeRun:
        id = "run123"

        def define_metric(self, name, step_metric=None):
            calls.append(("define", name, step_metric))

        def log(self, data, step=None):
            calls.append(("log", data, step))

        def finish(self):
            calls.append(("finish",))

    fake = types.SimpleNamespace(init=lambda **kwargs: FakeRun())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    logger = MetricLogger(tmp_path, wandb_mode="offline")
    logger.log({"loss/bc": 1.0}, step=2000)
    logger.log({"eval/success_rate": 0.5}, step=0)
    logger.close()
    assert ("define", "*", "step") in calls
    logs = [c for c in calls if c[0] == "log"]
    assert logs == [
        ("log", {"loss/bc": 1.0, "step": 2000}, None),
        ("log", {"eval/success_rate": 0.5, "step": 0}, None),
    ]
