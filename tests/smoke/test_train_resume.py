"""Smoke: train -> checkpoint -> stop -> resume gives exactly the uninterrupted result; the CLI runs."""

import subprocess
import sys

import pytest
import torch

from robot_rl.core.errors import ConfigError
from robot_rl.trainer import Trainer

pytestmark = pytest.mark.smoke


def _params(trainer):
    return {k: v.clone() for k, v in trainer.imitation.state_dict()["policy"].items()}


def test_exact_resume_equals_uninterrupted_run(tmp_path):
    from tests.conftest import make_train_config

    straight = Trainer(make_train_config(tmp_path / "a", **{"base.steps": 40}))
    straight.run()

    half = Trainer(make_train_config(tmp_path / "b", **{"base.steps": 40}))
    summary = half.run(until_step=20)
    assert not summary.finished and summary.steps == 20
    del half  # the process "dies"; only the checkpoint survives
    resumed = Trainer(make_train_config(tmp_path / "b", **{"base.steps": 40, "resume": "true"}))
    assert resumed.step == 20
    resumed.run()

    a, b = _params(straight), _params(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    opt_a = straight.imitation.state_dict()["optimizer"]["state"]
    opt_b = resumed.imitation.state_dict()["optimizer"]["state"]
    for idx in opt_a:
        assert torch.equal(opt_a[idx]["exp_avg"], opt_b[idx]["exp_avg"])
    assert (tmp_path / "b" / "bundle" / "bundle.json").is_file()


def test_resume_refuses_a_different_config(tmp_path):
    from tests.conftest import make_train_config

    Trainer(make_train_config(tmp_path / "r")).run(until_step=10)
    with pytest.raises(ConfigError, match=r"cannot resume with a different config: base.lr"):
        Trainer(make_train_config(tmp_path / "r", **{"resume": "true", "base.lr": 0.5}))
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
        "base.steps=100",
        "train.env_steps=300",
        "train.eval_every=150",
        "algo.warmup_env_steps=100",
        "algo.critic_warmup_updates=50",
        "eval.n_episodes=5",
        f"hydra.run.dir={tmp_path}/run",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "run"
    for name in ("report.md", "metrics.jsonl", "eval.json", "learning_curve.png", "bundle/bundle.json"):
        assert (run / name).is_file(), name
    report = (run / "report.md").read_text()
    assert "| base policy (imitation) |" in report and "| refined (residual) |" in report
    assert (run / "base_bundle" / "bundle.json").is_file()
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
        (["task=point_reach", "base.lr=-1"], "error: base.lr must be > 0, got -1.0"),
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


# EXPO trains the base online: a tiny single-step diffusion base
EXPO_SMALL = {
    "policy": "diffusion",
    "policy.obs_horizon": 1,
    "policy.chunk_size": 1,
    "policy.execution_horizon": 1,
    "policy.mlp_hidden": 32,
    "policy.mlp_blocks": 1,
    "policy.num_inference_steps": 3,
    "algo.num_samples": 4,
    "algo.num_edits": 4,
    "algo.hidden_dims": "[32,32]",
}


PARL_SMALL = {
    **{k: v for k, v in EXPO_SMALL.items() if not k.startswith("algo.")},
    "algo.num_samples": 4,
    "algo.top_k": 2,
    "algo.local_steps": 1,
    "algo.hidden_dims": "[32,32]",
}


@pytest.mark.parametrize("algo", ["residual", "sac", "expo", "pa_rl", "wsrl"])
def test_online_exact_resume(tmp_path, algo):
    """Online phase: N env steps straight == stop at an episode end + resume, bit for bit."""
    from tests.conftest import make_train_config

    small = {
        **{"expo": EXPO_SMALL, "pa_rl": PARL_SMALL, "wsrl": {"algo.offline_updates": 20}}.get(algo, {}),
        "algo": algo,
        "base.steps": 30,
        "train.env_steps": 160,
        "train.eval_every": 80,
        "train.eval_episodes": 2,
        "train.checkpoint_every": 40,
        "algo.warmup_env_steps": 40,
        "algo.critic_warmup_updates": 5,
        "algo.batch_size": 16,
        "algo.utd": 2,
        "eval.n_episodes": 2,
    }
    straight = Trainer(make_train_config(tmp_path / "a", **small))
    done = straight.run()
    assert done.finished and done.env_steps == 160

    first = Trainer(make_train_config(tmp_path / "b", **small))
    stopped = first.run(until_env_step=70)
    assert not stopped.finished and 70 <= stopped.env_steps < 160
    del first
    resumed = Trainer(make_train_config(tmp_path / "b", resume="true", **small))
    resumed.run()
    _assert_equal_trees(straight.algo.state_dict(), resumed.algo.state_dict())
    _assert_equal_trees(straight.imitation.state_dict(), resumed.imitation.state_dict())  # the base
    assert straight.history == resumed.history
    assert len(straight.online_buffer) == len(resumed.online_buffer)


def _assert_equal_trees(a, b, path=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _assert_equal_trees(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, (list, tuple)):  # tuples come back as lists from JSON
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal_trees(x, y, f"{path}/{i}")
    else:
        assert a == b, path


def test_collect_cli_writes_a_store_the_trainer_reads(tmp_path):
    from robot_rl.data.episode_store import EpisodeStore
    from tests.conftest import make_train_config

    out = _cli(
        "robot_rl.cli.collect",
        "task=point_reach",
        "n_episodes=3",
        "expert_noise=0.1",
        f"out={tmp_path}/demos",
        f"hydra.run.dir={tmp_path}/run",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    store = EpisodeStore(tmp_path / "demos")
    assert len(store) == 3 and store[0].source == "scripted_expert" and store[0].is_demo.all()
    assert store[0].metadata["seed"] == 2_000_000  # the demo stream of robot_rl.core.seeds
    trainer = Trainer(make_train_config(tmp_path / "t", **{"demos.path": str(tmp_path / "demos")}))
    demos = trainer.collect_demos()
    assert len(demos) == 3
    assert (demos[0].states == store[0].observations["state"][:-1]).all()


def test_eval_cli_with_latency_and_bad_bundle(tmp_path):
    import json

    from tests.conftest import make_train_config

    Trainer(make_train_config(tmp_path / "t")).run()
    bundle = tmp_path / "t" / "bundle"
    args = [
        "robot_rl.cli.eval",
        f"bundle={bundle}",
        "task=point_reach",
        "n_episodes=3",
        "video_episodes=0",
        "inference_ms=50",
        "actuation_ms=20",
        f"hydra.run.dir={tmp_path}/e",
    ]
    out = _cli(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "e" / "eval.json").read_text())
    assert result["latency"] == {"inference_ms": 50.0, "actuation_ms": 20.0, "obs_ms": 0.0}
    assert result["n_episodes"] == 3 and result["seeds"] == [0, 1, 2]
    (bundle / "model.safetensors").unlink()
    out = _cli(
        *args[:1], f"bundle={bundle}", "task=point_reach", f"hydra.run.dir={tmp_path}/e2", cwd=tmp_path
    )
    assert out.returncode == 2 and "missing file" in out.stderr and "model.safetensors" in out.stderr
