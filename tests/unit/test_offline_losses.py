"""Conservative / offline critic losses (Cal-QL, IQL expectile, AWR weights) against hand-worked values."""

import math

import pytest
import torch

from robot_rl.core.losses import awr_weights, calql_regularizer, expectile_loss, iql_value_loss

pytestmark = pytest.mark.unit
t = torch.tensor
ln = math.log


# --- Cal-QL regularizer ---
# Q values are chosen as logs so every logsumexp is ln(sum of the exponentials).


def _calql_inputs(mc):
    # K=1, B=1, Nr=1, Np=2: Q_data = ln 2, random [0] (= ln 1), policy [ln 0.5, ln 4]
    q_data = t([[ln(2.0)]])
    q_random = t([[[0.0]]])
    q_policy = t([[[ln(0.5), ln(4.0)]]])
    return q_data, q_random, q_policy, t([mc])


def test_calql_floor_lifts_low_policy_q():
    # V_MC = ln 3: policy [ln 0.5, ln 4] -> floored [ln 3, ln 4] (ln 0.5 lifted, ln 4 kept)
    # set {random 0, ln 3, ln 4, data ln 2}: logsumexp = ln(1 + 3 + 4 + 2) = ln 10
    # term = ln 10 - ln 2 = ln 5
    reg = calql_regularizer(*_calql_inputs(ln(3.0)), alpha=1.0)
    assert reg.item() == pytest.approx(ln(5.0), rel=1e-6)


def test_calql_floor_below_all_q_changes_nothing():
    # V_MC = ln 0.25 is below both policy Qs: policy stays [ln 0.5, ln 4]
    # logsumexp = ln(1 + 0.5 + 4 + 2) = ln 7.5; term = ln 7.5 - ln 2 = ln 3.75
    reg = calql_regularizer(*_calql_inputs(ln(0.25)), alpha=1.0)
    assert reg.item() == pytest.approx(ln(3.75), rel=1e-6)
    # same as plain CQL (floor at -inf)
    plain = calql_regularizer(*_calql_inputs(-1e9), alpha=1.0)
    assert reg.item() == pytest.approx(plain.item(), rel=1e-6)


def test_calql_random_actions_not_floored():
    # random Q = -5 with V_MC = 0; policy [0], data 0.
    # random stays -5: logsumexp = ln(e^-5 + 1 + 1) = ln(2 + e^-5); term = that - 0
    # (were the random action floored it would be ln 3)
    reg = calql_regularizer(t([[0.0]]), t([[[-5.0]]]), t([[[0.0]]]), t([0.0]), alpha=1.0)
    assert reg.item() == pytest.approx(ln(2.0 + math.exp(-5.0)), rel=1e-6)
    assert reg.item() != pytest.approx(ln(3.0))


def test_calql_data_action_inside_logsumexp():
    # only the data action in the set (Nr=Np=1 at -inf-ish): logsumexp ≈ Q_data -> term ≈ 0
    reg = calql_regularizer(t([[3.0]]), t([[[-1e4]]]), t([[[-1e4]]]), t([-1e4]), alpha=1.0)
    assert reg.item() == pytest.approx(0.0, abs=1e-6)


def test_calql_alpha_scales_linearly():
    # α = 0.005 (PA-RL): 0.005·ln 5
    reg = calql_regularizer(*_calql_inputs(ln(3.0)), alpha=0.005)
    assert reg.item() == pytest.approx(0.005 * ln(5.0), rel=1e-6)
    # tensor α works too
    reg_t = calql_regularizer(*_calql_inputs(ln(3.0)), alpha=t(2.0))
    assert reg_t.item() == pytest.approx(2.0 * ln(5.0), rel=1e-6)


def test_calql_temperature():
    # T = 2 with every Q doubled (and V_MC doubled): Q/T gives the ln-values of the first test,
    # so T·logsumexp(Q/T) = 2·ln 10, minus Q_data = 2·ln 2 -> 2·ln 5
    q_data, q_random, q_policy, mc = _calql_inputs(ln(3.0))
    reg = calql_regularizer(2 * q_data, 2 * q_random, 2 * q_policy, 2 * mc, alpha=1.0, temperature=2.0)
    assert reg.item() == pytest.approx(2.0 * ln(5.0), rel=1e-6)
    # T = 1 on the doubled Qs is a different number: ln(1 + 9 + 16 + 4) - 2 ln 2 = ln 30 - ln 4 = ln 7.5
    reg1 = calql_regularizer(2 * q_data, 2 * q_random, 2 * q_policy, 2 * mc, alpha=1.0)
    assert reg1.item() == pytest.approx(ln(7.5), rel=1e-6)
    with pytest.raises(ValueError):
        calql_regularizer(q_data, q_random, q_policy, mc, alpha=1.0, temperature=0.0)


def test_calql_mean_over_heads_and_batch():
    # K=2, B=2, Nr=1, Np=2; mc_return is per state and broadcast over heads.
    # state 0 has V_MC = ln 3, state 1 has V_MC = ln 0.25.
    # head 0: both states use the base numbers -> ln 5 (floored) and ln 3.75 (not floored)
    # head 1: all Q zero except data; state 0: data 0, floored policy [ln 3, ln 3]
    #   -> ln(1 + 3 + 3 + 1) - 0 = ln 8; state 1: policy [0, 0] above ln 0.25 -> ln(1+1+1+1) = ln 4
    # mean = (ln 5 + ln 3.75 + ln 8 + ln 4)/4 = ln(600)/4
    q_data = t([[ln(2.0), ln(2.0)], [0.0, 0.0]])
    q_random = t([[[0.0], [0.0]], [[0.0], [0.0]]])
    q_policy = t([[[ln(0.5), ln(4.0)], [ln(0.5), ln(4.0)]], [[0.0, 0.0], [0.0, 0.0]]])
    mc = t([ln(3.0), ln(0.25)])
    reg = calql_regularizer(q_data, q_random, q_policy, mc, alpha=1.0)
    assert reg.item() == pytest.approx(ln(600.0) / 4, rel=1e-6)


def test_calql_gradients_by_hand():
    # first test's numbers, softmax weights over {random, floored ln 0.5 -> ln 3, ln 4, data}
    # = [1, 3, 4, 2]/10.  dL/dQ_random = 0.1; the lifted policy Q gets 0 (the floor is a constant);
    # dL/dQ_policy[ln 4] = 0.4; dL/dQ_data = 0.2 - 1 = -0.8 (inside logsumexp and the -Q_data term)
    q_data, q_random, q_policy, mc = _calql_inputs(ln(3.0))
    for x in (q_data, q_random, q_policy, mc):
        x.requires_grad_(True)
    calql_regularizer(q_data, q_random, q_policy, mc, alpha=1.0).backward()
    assert q_random.grad.item() == pytest.approx(0.1, rel=1e-5)
    assert torch.allclose(q_policy.grad, t([[[0.0, 0.4]]]), atol=1e-6)
    assert q_data.grad.item() == pytest.approx(-0.8, rel=1e-5)
    assert mc.grad is None  # MC return treated as a constant


def test_calql_shape_mismatch_raises():
    with pytest.raises(ValueError):
        calql_regularizer(torch.zeros(2, 3), torch.zeros(2, 4, 1), torch.zeros(2, 3, 1), torch.zeros(3), 1.0)


# --- IQL expectile / value loss / AWR weights ---


def test_expectile_loss_asymmetric():
    # diff = target - prediction = [2, -1], τ = 0.7: positive weighted 0.7, negative 0.3
    # (0.7·4 + 0.3·1)/2 = (2.8 + 0.3)/2 = 1.55
    assert expectile_loss(t([2.0, -1.0]), 0.7).item() == pytest.approx(1.55)
    # single elements: 0.7·4 = 2.8 and 0.3·1 = 0.3
    assert expectile_loss(t([2.0]), 0.7).item() == pytest.approx(2.8)
    assert expectile_loss(t([-1.0]), 0.7).item() == pytest.approx(0.3)


def test_expectile_half_is_half_mse():
    # τ = 0.5: 0.5·mean(diff²) = 0.5·(4 + 1 + 9)/3 = 7/3
    diff = t([2.0, -1.0, 3.0])
    assert expectile_loss(diff, 0.5).item() == pytest.approx(7.0 / 3.0)
    assert expectile_loss(diff, 0.5).item() == pytest.approx(0.5 * diff.pow(2).mean().item())


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_expectile_bad_tau_raises(bad):
    with pytest.raises(ValueError):
        expectile_loss(t([1.0]), bad)


def test_iql_value_loss_gradient_to_v_only():
    # q = [3, 1], v = [1, 2] -> diff = q - v = [2, -1] -> loss 1.55 with τ = 0.7
    q = t([3.0, 1.0], requires_grad=True)
    v = t([1.0, 2.0], requires_grad=True)
    loss = iql_value_loss(q, v, 0.7)
    assert loss.item() == pytest.approx(1.55)
    loss.backward()
    # dL/dv = -2·w·(q - v)/B = [-2·0.7·2/2, -2·0.3·(-1)/2] = [-1.4, 0.3]
    assert torch.allclose(v.grad, t([-1.4, 0.3]))
    assert q.grad is None  # Q detached


def test_awr_weights_clipped_and_detached():
    # β = 2: advantages [1, 0, -1, 10] -> exp [e², 1, e^-2, e^20 -> clipped 100]
    q = t([1.0, 0.0, -1.0, 10.0], requires_grad=True)
    v = torch.zeros(4, requires_grad=True)
    w = awr_weights(q, v, beta=2.0)
    expected = t([math.exp(2.0), 1.0, math.exp(-2.0), 100.0])
    assert torch.allclose(w, expected, rtol=1e-5)
    assert not w.requires_grad
    assert torch.isfinite(awr_weights(t([1e4]), t([0.0]), beta=10.0)).all()  # no overflow
    with pytest.raises(ValueError):
        awr_weights(q, v, beta=1.0, max_weight=0.0)
