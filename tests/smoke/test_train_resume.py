"""Smoke: train -> checkpoint -> stop -> resume gives exactly the uninterrupted result; the CLI runs."""

import subprocess
import sys

import pytest
import torch

from robot_rl.core.errors import ConfigError
from robot_rl.trainer import Trainer

pytestmark = pytest.mark.smoke


def _params(trainer):
    return {k: v.clone() for k, v in trainer.algo.state_dict()["policy"].items()}


def test_exact_resume_equals_uninterrupted_run(tmp_path):
    from tests.conftest import make_train_config

    straight = Trainer(make_train_config(tmp_path / "a", **{"train.offline_steps": 40}))
    straight.run()

    half = Trainer(make_train_config(tmp_path / "b", **{"train.offline_steps": 40}))
    summary = half.run(until_step=20)
    assert not summary.finished and summary.steps == 20
    del half  # the process "dies"; only the checkpoint survives
    resumed = Trainer(make_train_config(tmp_path / "b", **{"train.offline_steps": 40, "resume": "true"}))
    assert resumed.step == 20
    resumed.run()

    a, b = _params(straight), _params(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    opt_a = straight.algo.state_dict()["optimizer"]["state"]
    opt_b = resumed.algo.state_dict()["optimizer"]["state"]
    for idx in opt_a:
        assert torch.equal(opt_a[idx]["exp_avg"], opt_b[idx]["exp_avg"])
    assert (tmp_path / "b" / "bundle" / "bundle.json").is_file()


def test_resume_refuses_a_different_config(tmp_path):
    from tests.conftest import make_train_config

    Trainer(make_train_config(tmp_path / "r")).run(until_step=10)
    with pytest.raises(ConfigError, match=r"cannot resume with a different config: algo.lr"):
        Trainer(make_train_config(tmp_path / "r", **{"resume": "true", "algo.lr": 0.5}))
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        Trainer(make_train_config(tmp_path / "empty", resume="true"))


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_train_cli_writes_report_bundle_and_loadable_policy(tmp_path):
    out = _cli(
        "robot_rl.cli.train",
        "task=point_reach",
        "experiment=quick",
        "logger=local",
        "logger.progress=false",
        "train.offline_steps=100",
        "eval.n_episodes=5",
        f"hydra.run.dir={tmp_path}/run",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "run"
    for name in ("report.md", "metrics.jsonl", "eval.json", "learning_curve.png", "bundle/bundle.json"):
        assert (run / name).is_file(), name
    assert "| base policy (after imitation) |" in (run / "report.md").read_text()
    import robot_rl

    policy = robot_rl.load_policy(run / "bundle")
    assert policy.act({"state": torch.zeros(9).numpy()}).shape == (3,)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["task=nope"],
            "error: unknown task 'nope'; valid options: lift, peg_insert, point_reach, push, reach",
        ),
        (["task=point_reach", "algo.lr=-1"], "error: algo.lr must be > 0, got -1.0"),
        (
            ["task=point_reach", "policy.chunk_size=80"],
            "error: policy.chunk_size=80 is longer than the task horizon",
        ),
    ],
)
def test_bad_input_exits_nonzero_with_one_line(tmp_path, args, message):
    out = _cli("robot_rl.cli.train", *args, f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().startswith(message) and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
