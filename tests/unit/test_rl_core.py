"""Shared off-policy RL core: losses, critic ensemble, reductions, actor heads (hand-worked values)."""

import copy
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from robot_rl.core.actor_heads import (
    LearnedTemperature,
    ResidualHead,
    TanhGaussianHead,
    compose_action,
    tanh_gaussian_log_prob,
)
from robot_rl.core.algorithm import frozen
from robot_rl.core.critics import (
    CriticEnsemble,
    EnsembleLayerNorm,
    EnsembleLinear,
    Reduction,
    hl_gauss_projection,
    polyak_update,
    reduce_mean,
    reduce_min,
    reduce_min_random_subset,
)
from robot_rl.core.losses import (
    critic_loss,
    deterministic_actor_loss,
    hl_gauss_loss,
    mc_returns,
    n_step_returns,
    sac_actor_loss,
    smoothed_target_action,
    soft_td_target,
    td_target,
    temperature_loss,
)

pytestmark = pytest.mark.unit
t = torch.tensor


# --- TD targets (STYLE §10.8 example) ---


@pytest.mark.parametrize("terminated, expected", [(0.0, 2.05), (1.0, 1.0)])
def test_style_critic_target_example(terminated, expected):
    # next_q over K=2 heads = [2, 3] -> min 2; soft value 2 - 0.1·(-1) = 2.1;
    # discount = γ·(1 - d) = 0.5 -> target 1 + 0.5·2.1 = 2.05; terminated: discount 0 -> target 1.
    next_q = reduce_min(t([[2.0], [3.0]]))
    discount = 0.5 * (1.0 - t([terminated]))
    y = soft_td_target(t([1.0]), discount, next_q, t([-1.0]), 0.1)
    assert y.item() == pytest.approx(expected)
    # (truncated-but-not-terminated keeps discount γ: checked through the buffer in test_replay.py)


def test_td_target_and_critic_loss_by_hand():
    # 1 + 0.9·2 = 2.8; terminal row: 1 + 0·5 = 1
    assert torch.allclose(td_target(t([1.0, 1.0]), t([0.9, 0.0]), t([2.0, 5.0])), t([2.8, 1.0]))
    # q [K=2, B=2] = [[1, 2], [3, 4]], y = [2, 2]: errors² 1, 0, 1, 4 -> mean 1.5
    q = t([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = t([2.0, 2.0], requires_grad=True)
    loss = critic_loss(q, y)
    loss.backward()
    assert loss.item() == pytest.approx(1.5)
    assert y.grad is None  # target detached
    # dL/dq = 2(q - y)/4 = [[-0.5, 0], [0.5, 1]]
    assert torch.allclose(q.grad, t([[-0.5, 0.0], [0.5, 1.0]]))


def test_actor_losses_by_hand():
    q = t([1.0, 3.0])
    assert deterministic_actor_loss(q).item() == pytest.approx(-2.0)  # -mean Q
    # ‖δ‖² = 1+4 = 5 and 0+1 = 1 -> mean 3; -2 + 0.5·3 = -0.5
    delta = t([[1.0, 2.0], [0.0, 1.0]])
    assert deterministic_actor_loss(q, delta, l2=0.5).item() == pytest.approx(-0.5)
    # mean(α·logp - Q) = ((0.5·-1 - 1) + (0.5·-2 - 3)) / 2 = (-1.5 - 4) / 2 = -2.75
    assert sac_actor_loss(q, t([-1.0, -2.0]), 0.5).item() == pytest.approx(-2.75)


def test_temperature_loss_sign():
    # entropy -logp = 1 > target -2: logp + H̄ = -1 - 2 = -3, loss = -log α·(-3) = 3·log α,
    # d/dlogα = +3 > 0, so gradient descent lowers α (enough entropy already).
    log_alpha = torch.tensor(math.log(2.0), requires_grad=True)
    loss = temperature_loss(log_alpha, t([-1.0]), target_entropy=-2.0)
    assert loss.item() == pytest.approx(3 * math.log(2.0))
    loss.backward()
    assert log_alpha.grad.item() == pytest.approx(3.0)
    # entropy 1 < target 3: logp + H̄ = -1 + 3 = 2, gradient -2 -> descent raises α.
    temp = LearnedTemperature(init_alpha=0.5, target_entropy=3.0)
    assert temp.alpha.item() == pytest.approx(0.5)
    temp.loss(t([-1.0])).backward()
    assert temp.log_alpha.grad.item() == pytest.approx(-2.0)
    with torch.no_grad():  # one SGD step, lr 0.1: log α += 0.2
        temp.log_alpha -= 0.1 * temp.log_alpha.grad
    assert temp.alpha.item() == pytest.approx(0.5 * math.exp(0.2))


def test_smoothed_target_action_clips_delta_then_action():
    # σ = 0: a' = clip(a_b' + clip(δ', -1, 1), -1, 1)
    # row 0: 0.95 + 0.1 = 1.05 -> 1.0; row 1: -0.5 + 0.2 = -0.3;
    # row 2: δ' = 1.5 -> clipped to 1 first, so a' = -1 + 1 = 0 (not 0.5)
    base = t([[0.95], [-0.5], [-1.0]])
    delta = t([[0.1], [0.2], [1.5]])
    out = smoothed_target_action(base, delta, noise_std=0.0, noise_clip=0.3)
    assert torch.allclose(out, t([[1.0], [-0.3], [0.0]]))
    # huge σ: the noise is clipped to ±c = ±0.3, so from a_b' = δ' = 0 every |a'| is 0.3
    g = torch.Generator().manual_seed(0)
    out = smoothed_target_action(torch.zeros(200, 2), torch.zeros(200, 2), 1e3, 0.3, g)
    assert torch.allclose(out.abs(), torch.full((200, 2), 0.3))


# --- n-step / MC returns (reference implementation) ---


def test_n_step_returns_termination_vs_truncation():
    # γ = 0.5, n = 3, r = [1, 2, 3, 4], episode ends at t = 3
    # R0 = 1 + .5·2 + .25·3 = 2.75 (m=3)   R1 = 2 + .5·3 + .25·4 = 4.5 (m=3)
    # R2 = 3 + .5·4 = 5 (m=2)               R3 = 4 (m=1)
    r = [1.0, 2.0, 3.0, 4.0]
    ret, disc, nxt = n_step_returns(r, [0, 0, 0, 1], [0, 0, 0, 0], 0.5, 3)
    assert np.allclose(ret, [2.75, 4.5, 5.0, 4.0])
    # termination: only R0's window (t..t+2 = 0..2) stops before the end -> γ³ = .125; others 0
    assert np.allclose(disc, [0.125, 0.0, 0.0, 0.0])
    assert list(nxt) == [2, 3, 3, 3]
    # truncation: same returns, discounts γ^m = .125, .125, .25, .5 (still bootstraps)
    ret2, disc2, nxt2 = n_step_returns(r, [0, 0, 0, 0], [0, 0, 0, 1], 0.5, 3)
    assert np.allclose(ret2, ret) and np.allclose(disc2, [0.125, 0.125, 0.25, 0.5])
    assert list(nxt2) == [2, 3, 3, 3]


def test_n_step_returns_stop_at_inner_episode_boundary():
    # episodes [1, 2] (terminated at 1) and [3] (truncated), γ = .5, n = 3
    # R0 = 1 + .5·2 = 2, disc 0 (window ends on the termination); R1 = 2, disc 0; R2 = 3, disc .5
    ret, disc, nxt = n_step_returns([1.0, 2.0, 3.0], [0, 1, 0], [0, 0, 1], 0.5, 3)
    assert np.allclose(ret, [2.0, 2.0, 3.0]) and np.allclose(disc, [0.0, 0.0, 0.5])
    assert list(nxt) == [1, 1, 2]


def test_mc_returns_by_hand():
    # γ = .5: G3 = 4, G2 = 3 + .5·4 = 5, G1 = 2 + .5·5 = 4.5, G0 = 1 + .5·4.5 = 3.25
    assert np.allclose(mc_returns([1.0, 2.0, 3.0, 4.0], 0.5), [3.25, 4.5, 5.0, 4.0])


# --- critic ensemble ---


def _per_head_reference(critic: CriticEnsemble, x: torch.Tensor) -> torch.Tensor:
    """Head-by-head loop over the same parameters (the non-vectorized definition)."""
    outs = []
    for k in range(critic.num_heads):
        h = x
        for layer in critic.net:
            if isinstance(layer, EnsembleLinear):
                h = h @ layer.weight[k] + layer.bias[k, 0]
            elif isinstance(layer, EnsembleLayerNorm):
                h = F.layer_norm(h, (layer.dim,), layer.weight[k, 0], layer.bias[k, 0], layer.eps)
            else:
                h = layer(h)
        outs.append(h.squeeze(-1))
    return torch.stack(outs)


def test_ensemble_matches_per_head_loop_and_grads_reach_every_head():
    torch.manual_seed(0)
    critic = CriticEnsemble(obs_dim=5, action_dim=2, num_heads=4, hidden=(16, 16))
    obs, act = torch.randn(7, 5), torch.randn(7, 2)
    q = critic(obs, act)
    assert q.shape == (4, 7)
    assert torch.allclose(q, _per_head_reference(critic, torch.cat([obs, act], -1)), atol=1e-5)
    # leading dims [B, N] (candidate scoring) flatten and come back
    q3 = critic(obs.unsqueeze(1).expand(7, 3, 5), torch.randn(7, 3, 2))
    assert q3.shape == (4, 7, 3)
    q.sum().backward()
    for p in critic.parameters():
        per_head = p.grad.reshape(4, -1).abs().sum(1)
        assert (per_head > 0).all()  # every head's slice of every parameter gets gradient


def test_reductions_and_redq_subset_without_replacement():
    q = t([[0.0, 5.0], [1.0, 4.0], [2.0, 3.0]])  # K = 3, B = 2
    assert torch.allclose(reduce_mean(q), t([1.0, 4.0])) and torch.allclose(reduce_min(q), t([0.0, 3.0]))
    # column 0 = head index. M = 2 distinct heads of 3: min is 0 unless head 0 is left out
    # (p = 1/3) -> 1; never 2 (that needs head 2 twice, only possible with replacement).
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([reduce_min_random_subset(q, 2, g) for _ in range(300)])
    assert set(draws[:, 0].tolist()) == {0.0, 1.0}
    assert abs((draws[:, 0] == 0).float().mean().item() - 2 / 3) < 0.1
    # one subset for the whole batch: column 1 = 5 - head, so subsets {0,1}, {0,2}, {1,2} give
    # (0, 4), (0, 3), (1, 3); a pair like (1, 4) would mean different heads per column.
    assert {tuple(row) for row in draws.tolist()} == {(0.0, 4.0), (0.0, 3.0), (1.0, 3.0)}
    assert torch.equal(reduce_min_random_subset(q, 5, g), reduce_min(q))  # M ≥ K: plain min
    red = Reduction.parse("min_subset:2")
    assert red == Reduction("min_subset", 2) and str(red) == "min_subset:2"
    assert torch.equal(Reduction.parse("mean")(q), reduce_mean(q))
    with pytest.raises(ValueError):
        Reduction.parse("median")


def test_subset_heads_and_of_critic_match_the_full_ensemble():
    torch.manual_seed(0)
    critic = CriticEnsemble(obs_dim=5, action_dim=2, num_heads=5, hidden=(16, 16), layer_norm=True)
    obs, act = torch.randn(7, 5), torch.randn(7, 2)
    full = critic(obs, act)
    heads = torch.tensor([3, 1])
    assert torch.allclose(critic(obs, act, heads), full[[3, 1]], atol=1e-6)
    # same generator state -> same subset draw -> identical reduced value, for every kind
    for spec in ("min_subset:2", "min_subset:9", "mean", "min"):
        red = Reduction.parse(spec)
        g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
        for _ in range(5):  # several draws: the generators stay in step
            assert torch.allclose(red.of_critic(critic, obs, act, g1), red(critic(obs, act), g2), atol=1e-6)


def test_frozen_critic_passes_gradient_to_the_action_only():
    critic = CriticEnsemble(obs_dim=3, action_dim=2, num_heads=2, hidden=(8,))
    critic.net[0].bias.requires_grad_(False)  # a flag that must survive the context unchanged
    action = torch.randn(4, 2, requires_grad=True)
    with frozen(critic):
        q = critic(torch.randn(4, 3), action).mean()
    q.backward()
    assert action.grad is not None and action.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())
    assert [p.requires_grad for p in critic.parameters()][:2] == [True, False]
    assert all(p.requires_grad for p in list(critic.parameters())[2:])


def test_polyak_update_by_hand():
    src, tgt = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    for p in src.parameters():
        p.data.fill_(1.0)
    for p in tgt.parameters():
        p.data.fill_(0.0)
    polyak_update(tgt, src, 0.1)  # 0.9·0 + 0.1·1 = 0.1
    assert torch.allclose(tgt.weight, t([[0.1]]))
    polyak_update(tgt, src, 0.1)  # 0.9·0.1 + 0.1·1 = 0.19
    assert torch.allclose(tgt.bias, t([0.19]))
    a, b = CriticEnsemble(2, 1, 2, num_bins=5), CriticEnsemble(2, 1, 2, num_bins=5, v_max=10.0)
    polyak_update(b, a, 0.5)
    assert torch.equal(b.centers, a.centers)  # buffers copied exactly


# --- HL-Gauss ---


def test_hl_gauss_projection_and_to_scalar():
    # support [0, 10], 10 bins of width 1, σ = 0.75
    y = t([0.3, 2.5, 5.0, 9.1])
    p = hl_gauss_projection(y, 0.0, 10.0, 10, 0.75)
    assert p.shape == (4, 10) and torch.allclose(p.sum(-1), torch.ones(4))
    # y = 5 sits on the edge between bins 4 and 5: symmetric histogram
    assert torch.allclose(p[2], p[2].flip(0), atol=1e-6)
    critic = CriticEnsemble(2, 1, num_heads=2, num_bins=10, v_min=0.0, v_max=10.0)
    assert critic.sigma == pytest.approx(0.75)
    # interior targets come back through the expected value; 2.5 is 3.3σ from the edge 0, whose
    # truncated tail (Φ(-3.33) ≈ 4e-4) shifts the mean by ≈ 1e-3; edge targets are pulled inward more
    back = critic.to_scalar(p.log())
    assert torch.allclose(back[1:3], y[1:3], atol=3e-3)
    assert 0.3 < back[0] < 1.0 and 8.5 < back[3] < 9.1
    logits = torch.randn(2, 4, 10)
    ce = -(p * logits.log_softmax(-1)).sum(-1).mean()
    assert torch.allclose(hl_gauss_loss(logits, y, 0.0, 10.0, 0.75), ce)
    assert critic(torch.randn(4, 2), torch.randn(4, 1)).shape == (2, 4)
    assert critic.logits(torch.randn(4, 2), torch.randn(4, 1)).shape == (2, 4, 10)


# --- actor heads ---


def test_residual_head_zero_init_reproduces_base_exactly():
    torch.manual_seed(1)
    head = ResidualHead(in_dim=6, action_dim=3, hidden=(32, 32), scale=0.1)
    x, base = torch.randn(64, 6) * 10, torch.rand(64, 3) * 2 - 1
    delta = head(x)
    assert torch.equal(delta, torch.zeros(64, 3))
    assert torch.equal(compose_action(base, delta), base)
    (-compose_action(base, delta).sum()).backward()  # but the last layer still learns
    assert head.net[-1].weight.grad.abs().sum() > 0
    # compose clamps at the bounds: 0.95 + 0.1 -> 1.0
    assert torch.equal(compose_action(t([0.95, -0.99]), t([0.1, -0.1])), t([1.0, -1.0]))


def test_tanh_gaussian_log_prob_1d_by_hand():
    # μ = 0, σ = 1. u = 0: log N = -½log2π = -0.918939, log(1 - tanh²0) = 0 -> -0.918939
    # u = 1: log N = -0.5 - 0.918939 = -1.418939; 1 - tanh²1 = sech²1 = 0.419974, log = -0.867562
    #        -> log π(a) = -1.418939 + 0.867562 = -0.551377
    zero = torch.zeros(2, 1)
    lp = tanh_gaussian_log_prob(t([[0.0], [1.0]]), zero, zero)
    assert torch.allclose(lp, t([-0.918939, -0.551377]), atol=1e-5)
    # large |u|: the stable form stays finite where log(1 - tanh²) would give -inf
    assert torch.isfinite(tanh_gaussian_log_prob(t([[30.0]]), t([[30.0]]), t([[0.0]]))).all()
    # density integrates to 1 over a ∈ (-1, 1): ∫ exp(log π(a)) da = ∫ exp(log π) (1 - tanh²u) du
    u = torch.linspace(-8, 8, 20001, dtype=torch.float64).unsqueeze(-1)
    m, s = torch.full_like(u, 0.3), torch.full_like(u, math.log(0.7))
    dens = tanh_gaussian_log_prob(u, m, s).exp() * (1 - torch.tanh(u[:, 0]) ** 2)
    assert torch.trapezoid(dens, u[:, 0]).item() == pytest.approx(1.0, abs=1e-4)
    # β = 0.5, Da = 2: log π_β = log π - 2·log 0.5 = log π + 2·log 2
    u2, m2, s2 = torch.randn(5, 2), torch.randn(5, 2), torch.randn(5, 2) * 0.1
    diff = tanh_gaussian_log_prob(u2, m2, s2, scale=0.5) - tanh_gaussian_log_prob(u2, m2, s2)
    assert torch.allclose(diff, torch.full((5,), 2 * math.log(2.0)), atol=1e-5)


def test_tanh_gaussian_head_outputs():
    torch.manual_seed(0)
    head = TanhGaussianHead(4, 2, hidden=(16,), scale=0.5)
    x = torch.randn(32, 4)
    g = torch.Generator().manual_seed(3)
    a, lp, mean_a = head(x, generator=g)
    assert a.shape == (32, 2) and lp.shape == (32,) and (a.abs() < 0.5).all()
    a_det, lp_det, mean_det = head(x, deterministic=True)
    assert torch.equal(a_det, mean_det) and torch.equal(mean_det, mean_a)
    mean, log_std = head.distribution_params(x)
    assert torch.allclose(lp_det, tanh_gaussian_log_prob(mean, mean, log_std, 0.5))
    lp.sum().backward()  # reparameterized: gradients reach the network
    assert head.net[0].weight.grad.abs().sum() > 0
    tgt = copy.deepcopy(head)
    polyak_update(tgt, head, 1.0)
    assert torch.equal(tgt(x, deterministic=True)[0], a_det)
