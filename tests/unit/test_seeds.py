"""The seed space (robot_rl.core.seeds): final-evaluation seeds never meet a training, warm-up, demo,
in-training-evaluation or actor seed, for any run seed; and the trainer resets with them."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robot_rl.core import seeds

pytestmark = pytest.mark.unit


def test_streams_are_disjoint_and_fit_in_31_bits():
    ranges = sorted((s.base, s.stop, s.name) for s in seeds.STREAMS)
    for (_, stop, a), (base, _, b) in itertools.pairwise(ranges):
        assert stop <= base, f"{a} overlaps {b}"
    assert ranges[0][0] >= 0 and ranges[-1][1] <= 2**31


def test_seeds_by_hand():
    assert seeds.evaluation_seeds(3) == [0, 1, 2]
    assert seeds.evaluation_seeds(2, offset=50) == [50, 51]
    assert seeds.online_eval_seeds(2) == [1_000_000, 1_000_001]
    assert seeds.demo_seed(4, offset=10) == 2_000_014
    # run seed 0's training episodes are no longer 0, 1, 2, ... (the evaluation seeds)
    assert [seeds.train_seed(0, e) for e in range(3)] == [100_000_000, 100_000_001, 100_000_002]
    assert seeds.train_seed(7, 5) == 100_000_000 + 7 * 1_000_000 + 5
    assert seeds.actor_seed(1, 0) == 1_200_000_000 + 1_000_000
    assert seeds.stream_of(seeds.train_seed(3, 9)) == "train"
    with pytest.raises(ValueError, match="outside"):
        seeds.evaluation_seeds(2, offset=999_999)
    with pytest.raises(ValueError, match="outside"):
        seeds.train_seed(0, 1_000_000)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 10**9),
    st.integers(0, 999_999),
    st.integers(0, 999_999),
    st.integers(0, 999_999),
)
def test_no_run_seed_trains_on_an_evaluation_seed(run_seed, episode, eval_index, other):
    held_out = seeds.evaluation_seeds(1, offset=eval_index)[0]
    used = {
        seeds.train_seed(run_seed, episode),
        seeds.actor_seed(run_seed, episode),
        seeds.demo_seed(other),
        seeds.online_eval_seeds(other + 1)[-1],
        seeds.aux_seed(other),
    }
    assert held_out not in used
    assert seeds.stream_of(held_out) == "evaluation"


def test_the_trainer_resets_only_with_seeds_of_their_streams(tmp_path, monkeypatch):
    """A tiny run (demos -> base -> residual RL -> final evaluation): every reset seed it uses, by
    phase, comes from that phase's stream; no final-evaluation seed appears anywhere else."""
    import gymnasium as gym

    from robot_rl.trainer import Trainer
    from tests.conftest import make_train_config

    used: list[int] = []
    original = gym.Env.reset

    def spy(self, *, seed=None, options=None):
        if seed is not None:
            used.append(int(seed))
        return original(self, seed=seed, options=options)

    monkeypatch.setattr(gym.Env, "reset", spy)
    cfg = make_train_config(
        tmp_path,
        task="lift",
        algo="residual",
        **{
            "demos.n_episodes": 3,
            "base.steps": 20,
            "train.env_steps": 300,
            "train.eval_every": 150,
            "train.eval_episodes": 2,
            "eval.n_episodes": 3,
            "eval.video_episodes": 0,
        },
    )
    Trainer(cfg).run()
    by_stream: dict[str, set[int]] = {}
    for s in used:
        by_stream.setdefault(seeds.stream_of(s), set()).add(s)
    assert by_stream["evaluation"] == {0, 1, 2}  # base and refined policy on the same held-out seeds
    assert by_stream["train"] and by_stream["demos"] and by_stream["online_eval"]
    assert np.all([seeds.stream_of(s) != "evaluation" for s in by_stream["train"]])
