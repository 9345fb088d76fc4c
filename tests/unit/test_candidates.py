"""Candidate machinery (robot_rl/core/candidates.py): propose, edit, score, rank, local_optimize, select."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from robot_rl.core import candidates as cand
from robot_rl.core.actor_heads import TanhGaussianHead
from robot_rl.core.critics import CriticEnsemble, Reduction

pytestmark = pytest.mark.unit


class QuadraticCritic(CriticEnsemble):
    """Two heads with Q_k(s, a) = -‖a - c_k‖² (hand-checkable scores and gradients)."""

    def __init__(self, centers: torch.Tensor):
        nn.Module.__init__(self)
        self.register_buffer("centers", centers)  # [K, Da]
        self.dummy = nn.Parameter(torch.zeros(()))  # so that "no gradient reaches the critic" is testable

    @property
    def num_heads(self) -> int:
        return self.centers.shape[0]

    def forward(self, obs, action, heads=None):
        c = self.centers if heads is None else self.centers[heads]
        return (
            -((action[None] - c.view(-1, *([1] * (action.dim() - 1)), c.shape[-1])) ** 2).sum(-1)
            + 0 * self.dummy
        )


def test_score_rank_and_argmax_select_by_hand():
    critic = QuadraticCritic(torch.tensor([[0.0, 0.0], [0.2, 0.0]]))
    feats = torch.zeros(1, 3)
    pool = torch.tensor([[[1.0, 0.0], [0.1, 0.0], [-0.5, 0.5]]])
    # mean over heads of -‖a - c_k‖²: a0: -(1 + 0.64)/2 = -0.82; a1: -(0.01 + 0.01)/2 = -0.01;
    # a2: -(0.5 + 0.74)/2 = -0.62
    scores = cand.score(critic, feats, pool, Reduction.parse("mean"))
    torch.testing.assert_close(scores, torch.tensor([[-0.82, -0.01, -0.62]]))
    top, kept = cand.rank(scores, pool, 2)
    torch.testing.assert_close(top, torch.tensor([[-0.01, -0.62]]))
    torch.testing.assert_close(kept, pool[:, [1, 2]])
    assert cand.rank(scores, pool, 10)[1].shape == (1, 3, 2)  # k > N keeps all
    torch.testing.assert_close(cand.select(scores, pool, "argmax"), torch.tensor([[0.1, 0.0]]))
    # "min" over heads: a0: min(-1, -0.64) = -1; a1: -0.01; a2: min(-0.5, -0.74) = -0.74
    torch.testing.assert_close(
        cand.score(critic, feats, pool, Reduction.parse("min")), torch.tensor([[-1.0, -0.01, -0.74]])
    )


def test_softmax_select_follows_the_softmax_of_the_scores():
    scores = torch.tensor([[0.0, math.log(3.0)]])  # softmax = (1/4, 3/4)
    pool = torch.tensor([[[0.0], [1.0]]])
    gen = torch.Generator().manual_seed(0)
    picks = torch.stack([cand.select(scores, pool, "softmax", 1.0, gen) for _ in range(4000)])
    assert picks.mean().item() == pytest.approx(0.75, abs=0.03)
    # temperature 0.5 doubles the logits: softmax = (1/10, 9/10)
    picks = torch.stack([cand.select(scores, pool, "softmax", 0.5, gen) for _ in range(4000)])
    assert picks.mean().item() == pytest.approx(0.9, abs=0.02)
    with pytest.raises(ValueError, match="unknown mode"):
        cand.select(scores, pool, "best")


def test_local_optimize_by_hand_and_never_below_the_start():
    # one head, Q = -(a - 0.5)², ∇ = -2(a - 0.5). From a = 0: η = 0.1 → 0.1, 0.18, 0.244 (Q rises)
    critic = QuadraticCritic(torch.tensor([[0.5]]))
    q, a = cand.local_optimize(critic, torch.zeros(1, 2), torch.zeros(1, 1, 1), 3, 0.1)
    torch.testing.assert_close(a, torch.tensor([[[0.244]]]))
    torch.testing.assert_close(q, torch.tensor([[-(0.256**2)]]))
    # too large a step overshoots (a = 0 → 1.0 → clipped path); the best iterate (the start) is kept
    q, a = cand.local_optimize(critic, torch.zeros(1, 2), torch.zeros(1, 1, 1), 2, 2.0)
    torch.testing.assert_close(a, torch.tensor([[[0.0]]]))
    assert critic.dummy.grad is None and critic.dummy.requires_grad  # no gradient into the critic


@pytest.mark.parametrize("seed", range(5))
def test_local_optimize_never_lowers_q_below_the_best_raw_sample(seed):
    torch.manual_seed(seed)
    critic = CriticEnsemble(4, 3, num_heads=3, hidden=[32, 32], layer_norm=True)
    feats, pool = torch.randn(6, 4), torch.rand(6, 8, 3) * 2 - 1
    raw = cand.score(critic, feats, pool, Reduction.parse("mean"))
    q, opt = cand.local_optimize(critic, feats, pool, steps=5, step_size=0.05)
    assert (q >= raw - 1e-6).all()  # per candidate, hence also for the best one
    assert q.max(1).values.ge(raw.max(1).values - 1e-6).all()
    torch.testing.assert_close(q, cand.score(critic, feats, opt, Reduction.parse("mean")))
    assert opt.abs().max() <= 1.0
    with pytest.raises(ValueError, match="deterministic reduction"):
        cand.local_optimize(critic, feats, pool, 1, 0.1, "min_subset:2")


def test_edit_log_density_has_the_beta_change_of_variables():
    # zero network → u ~ N(0, 1); with ε drawn by a seeded generator the density is hand-computable:
    # log p(βε) = log N(u; 0, 1) − log(1 − tanh²u) − Da·log β
    beta, da = 0.25, 2
    head = TanhGaussianHead(3 + da, da, [8], scale=beta)
    for p in head.parameters():
        nn.init.zeros_(p)
    feats, a = torch.zeros(1, 3), torch.tensor([[[0.9, -0.2]]])
    edited, log_prob = cand.edit(head, feats, a, generator=torch.Generator().manual_seed(7))
    u = torch.randn(1, da, generator=torch.Generator().manual_seed(7))
    expected = (
        -(u**2) / 2 - 0.5 * math.log(2 * math.pi) - torch.log(1 - torch.tanh(u) ** 2)
    ).sum() - da * math.log(beta)
    torch.testing.assert_close(log_prob, expected.view(1, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(edited, (a + beta * torch.tanh(u)).clamp(-1, 1))  # clipped to the box
    assert edited.max() <= 1.0


class FixedSampler(nn.Module):
    """A stand-in base whose ``sample`` returns the same candidate chunks for every state."""

    def __init__(self, chunks: torch.Tensor):
        super().__init__()
        self.chunks = chunks  # [n, Ta, Da]
        self.calls: list[bool] = []

    def sample(self, obs_batch, n, use_ema=True):
        self.calls.append(use_ema)
        return self.chunks[None, :n].expand(obs_batch["obs_state"].shape[0], -1, -1, -1)


def test_propose_takes_first_actions_clips_and_appends_the_dataset_action():
    base = FixedSampler(torch.tensor([[[1.5, 0.0], [9.0, 9.0]], [[-0.3, 0.2], [9.0, 9.0]]]))
    out = cand.propose(base, torch.zeros(2, 1, 3), 2, dataset_action=torch.tensor([[0.1, 0.1], [0.2, 0.2]]))
    expected = torch.tensor([[1.0, 0.0], [-0.3, 0.2]])
    torch.testing.assert_close(out[:, :2], expected[None].expand(2, -1, -1))
    torch.testing.assert_close(out[:, 2], torch.tensor([[0.1, 0.1], [0.2, 0.2]]))
    cand.propose(base, torch.zeros(1, 1, 3), 1, use_ema=False)
    assert base.calls == [True, False]
    assert np.all(np.isfinite(out.numpy()))
