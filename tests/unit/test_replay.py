"""Replay buffer: n-step views, episode ends, ring wrap-around, MC returns, mixing, persistence."""

import numpy as np
import pytest
import torch

from robot_rl.core.losses import soft_td_target
from robot_rl.core.replay import MixedSampler, ReplayBuffer
from robot_rl.core.serialization import load_tree, save_tree

pytestmark = pytest.mark.unit


def _buffer(capacity=16, n=3, gamma=0.5, **kw):
    return ReplayBuffer(
        capacity, {"state": (1,), "base_action": (2,)}, action_dim=2, n_step=n, gamma=gamma, **kw
    )


def _add_episode(buf, rewards, terminated, start=0, **flags):
    """Steps with state = start + t and next_state = start + t + 1, so next_obs identifies s_{t+m}."""
    T = len(rewards)
    for i, r in enumerate(rewards):
        s = float(start + i)
        obs = {"state": np.array([s]), "base_action": np.array([s, -s])}
        nxt = {"state": np.array([s + 1]), "base_action": np.array([s + 1, -s - 1])}
        last = i == T - 1
        buf.add(obs, np.array([s, 0.0]), r, nxt, last and terminated, last and not terminated, **flags)


def _all(buf):
    """Every sampleable transition, ordered by its obs state."""
    idx = np.flatnonzero(buf._a["ready"][: len(buf)])
    batch = buf.gather(idx)
    order = torch.argsort(batch["obs/state"][:, 0])
    return {k: v[order] for k, v in batch.items()}


@pytest.mark.parametrize("terminated", [True, False])
def test_n_step_termination_vs_truncation(terminated):
    # γ = .5, n = 3, r = [1, 2, 3, 4]: R = [2.75, 4.5, 5, 4] (1 + .5·2 + .25·3, 2 + .5·3 + .25·4, 3 + .5·4, 4)
    # termination: discount [γ³, 0, 0, 0] = [.125, 0, 0, 0]; truncation: γ^m = [.125, .125, .25, .5]
    # bootstrap state s_{t+m}: t=0 -> s3; t=1 -> s4; t=2 -> s4; t=3 -> s4
    buf = _buffer()
    _add_episode(buf, [1.0, 2.0, 3.0, 4.0], terminated)
    b = _all(buf)
    assert torch.allclose(b["reward"], torch.tensor([2.75, 4.5, 5.0, 4.0]))
    expected = [0.125, 0.0, 0.0, 0.0] if terminated else [0.125, 0.125, 0.25, 0.5]
    assert torch.allclose(b["discount"], torch.tensor(expected))
    assert b["next_obs/state"][:, 0].tolist() == [3.0, 4.0, 4.0, 4.0]
    assert b["next_obs/base_action"][:, 0].tolist() == [3.0, 4.0, 4.0, 4.0]  # next base action a_b'
    # MC return-to-go: G = [1 + .5·4.5, 2 + .5·5, 3 + .5·4, 4] = [3.25, 4.5, 5, 4] (no bootstrap)
    assert torch.allclose(b["mc_return"], torch.tensor([3.25, 4.5, 5.0, 4.0]))
    assert b["action"].dtype == torch.float32 and b["is_demo"].dtype == torch.bool


def test_style_example_truncation_still_bootstraps():
    # one-step episodes, γ = 0.5, r = 1, next_q = 2, next_logp = -1, α = 0.1:
    # truncated -> discount 0.5 -> 1 + 0.5·2.1 = 2.05; terminated -> discount 0 -> 1
    for terminated, target in ((False, 2.05), (True, 1.0)):
        buf = _buffer(n=1)
        _add_episode(buf, [1.0], terminated)
        b = buf.sample(1, np.random.default_rng(0))
        y = soft_td_target(b["reward"], b["discount"], torch.tensor([2.0]), torch.tensor([-1.0]), 0.1)
        assert y.item() == pytest.approx(target)


def test_open_episode_steps_become_sampleable_after_n_steps():
    buf = _buffer()  # n = 3, γ = .5
    obs = lambda s: {"state": np.array([s]), "base_action": np.zeros(2)}  # noqa: E731
    for s in range(2):
        buf.add(obs(s), np.zeros(2), 1.0, obs(s + 1), False, False)
    assert len(buf) == 2 and buf.num_sampleable == 0 and buf.episode_open
    buf.add(obs(2), np.zeros(2), 1.0, obs(3), False, False)  # step 0 now has R = 1 + .5 + .25 = 1.75
    assert buf.num_sampleable == 1
    b = buf.sample(4, np.random.default_rng(0))
    assert torch.all(b["reward"] == 1.75) and torch.all(b["discount"] == 0.125)
    assert torch.all(torch.isnan(b["mc_return"]))  # episode still open
    buf.end_episode()  # truncation: the 2 remaining steps become sampleable, MC returns are written
    assert buf.num_sampleable == 3 and not buf.episode_open
    assert torch.allclose(_all(buf)["mc_return"], torch.tensor([1.75, 1.5, 1.0]))
    closed_only = _buffer(sample_open_episodes=False)
    for s in range(5):
        closed_only.add(obs(s), np.zeros(2), 1.0, obs(s + 1), False, False)
    assert closed_only.num_sampleable == 0
    closed_only.end_episode()
    assert closed_only.num_sampleable == 5


def test_ring_wrap_around():
    # capacity 5: episode A (4 steps, states 0..3) fills slots 0-3; episode B (3 steps, states 10..12,
    # truncated) goes to slots 4, 0, 1, overwriting A's steps 0 and 1.
    buf = _buffer(capacity=5)
    _add_episode(buf, [1.0, 2.0, 3.0, 4.0], terminated=True)
    _add_episode(buf, [1.0, 1.0, 1.0], terminated=False, start=10)
    assert len(buf) == 5 and buf.num_sampleable == 5
    b = _all(buf)
    assert b["obs/state"][:, 0].tolist() == [2.0, 3.0, 10.0, 11.0, 12.0]
    # A: R2 = 5, R3 = 4 (discount 0, terminated); B: R = [1 + .5 + .25, 1 + .5, 1] = [1.75, 1.5, 1]
    assert torch.allclose(b["reward"], torch.tensor([5.0, 4.0, 1.75, 1.5, 1.0]))
    assert torch.allclose(b["discount"], torch.tensor([0.0, 0.0, 0.125, 0.25, 0.5]))
    # B step 0 lives in slot 4 and bootstraps from s_3 = next_obs of slot 1 (across the wrap)
    assert b["next_obs/state"][:, 0].tolist() == [4.0, 4.0, 13.0, 13.0, 13.0]
    # bulk insertion gives the same result as step-by-step insertion
    bulk = _buffer(capacity=5)
    for start, rewards, term in ((0, [1.0, 2.0, 3.0, 4.0], True), (10, [1.0, 1.0, 1.0], False)):
        s = np.arange(start, start + len(rewards), dtype=np.float32)[:, None]
        o = {"state": s, "base_action": np.concatenate([s, -s], 1)}
        n = {"state": s + 1, "base_action": np.concatenate([s + 1, -s - 1], 1)}
        flags = np.zeros(len(rewards), bool)
        flags[-1] = True
        bulk.add_episode(
            o, np.concatenate([s, 0 * s], 1), np.array(rewards), n, flags & term, flags & (not term)
        )
    for k, v in _all(bulk).items():
        assert torch.equal(v.nan_to_num(), b[k].nan_to_num()), k


def test_mixed_sampler_proportions_and_utd_split():
    rng = np.random.default_rng(0)
    online, prior = _buffer(capacity=64), _buffer(capacity=64)
    _add_episode(online, [0.0] * 20, True)
    _add_episode(prior, [1.0] * 20, True, is_demo=True)
    mix = MixedSampler(online, prior, prior_fraction=0.3)
    b = mix.sample(10, rng)  # round(10·0.3) = 3 prior rows first, then 7 online rows
    assert b["is_demo"].tolist() == [True] * 3 + [False] * 7
    batches = MixedSampler(online, prior, 0.5).sample_utd(8, 4, rng)  # G = 4 minibatches of B = 8
    assert len(batches) == 4
    for mb in batches:
        assert mb["obs/state"].shape == (8, 1) and mb["next_obs/base_action"].shape == (8, 2)
        assert mb["action"].shape == (8, 2) and mb["reward"].shape == (8,)
        assert int(mb["is_demo"].sum()) == 4
    empty = _buffer()
    assert MixedSampler(empty, prior, 0.5).sample(6, rng)["is_demo"].all()  # online empty: all prior
    assert not MixedSampler(online, empty, 0.5).sample(6, rng)["is_demo"].any()
    assert [mb["reward"].shape for mb in online.sample_utd(5, 3, rng)] == [(5,)] * 3


def test_state_dict_round_trip_gives_identical_samples(tmp_path):
    buf = _buffer(capacity=7)
    _add_episode(buf, [1.0, 0.0, 2.0, 0.0, 1.0], True)
    _add_episode(buf, [0.5, 0.5], False, start=20)
    obs = lambda s: {"state": np.array([s]), "base_action": np.ones(2)}  # noqa: E731
    for s in range(4):  # an episode still open at save time (pending n-step views)
        buf.add(obs(30 + s), np.ones(2), 0.25, obs(31 + s), False, False, is_intervention=True)
    save_tree(tmp_path, "replay", buf.state_dict())
    back = _buffer(capacity=7)
    back.load_state_dict(load_tree(tmp_path, "replay"))
    assert len(back) == len(buf) and back.num_sampleable == buf.num_sampleable
    for b in (buf, back):  # continue the open episode identically in both
        b.add(obs(34), np.ones(2), 1.0, obs(35), True, False)
    s1, s2 = buf.sample(32, np.random.default_rng(5)), back.sample(32, np.random.default_rng(5))
    for k in s1:
        assert torch.equal(s1[k].nan_to_num(), s2[k].nan_to_num()), k
    with pytest.raises(ValueError):
        _buffer(capacity=8).load_state_dict(buf.state_dict())
