"""Pure loss and target functions shared by the off-policy algorithms (ALGORITHMS.md §1(c)–§4(c), §9(c)).

Every function is a pure function of its inputs (no module state, no ``.item()``), so the algorithms in
``robot_rl/algos`` compose them and the unit tests check them against hand-worked numbers.

Shapes: ``B`` batch, ``K`` critic heads, ``Da`` action dim, ``T`` steps of a sequence, ``Nb`` HL-Gauss bins,
``Nr``/``Np`` random/policy actions per state in the CQL regularizer.
Discounts are always passed *pre-masked*: ``discount = γ^m·(1 - terminated)`` as produced by
:class:`robot_rl.core.replay.ReplayBuffer` (so a time-limit truncation keeps ``γ^m`` and bootstraps).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from robot_rl.core.critics import hl_gauss_projection

# --- TD targets ---


def td_target(reward: torch.Tensor, discount: torch.Tensor, next_q: torch.Tensor) -> torch.Tensor:
    """Bootstrapped target ``y = R + discount·Q'(s', a')`` (§1(c); TD3/ResFiT, SAC without entropy backup).

    Args:
        reward: ``[B]`` n-step return ``R^(m)``.
        discount: ``[B]`` ``γ^m·(1 - d)``; already zero after a true termination.
        next_q: ``[B]`` reduced target-critic value at ``(s_{t+m}, a')``.

    Returns:
        ``[B]`` target (not detached; :func:`critic_loss` detaches it).
    """
    return reward + discount * next_q


def soft_td_target(
    reward: torch.Tensor,
    discount: torch.Tensor,
    next_q: torch.Tensor,
    next_log_prob: torch.Tensor,
    alpha: torch.Tensor | float,
) -> torch.Tensor:
    """Soft (entropy-backup) target ``y = R + discount·(Q'(s', a') - α·log π(a'|s'))`` (SAC).

    Args:
        reward: ``[B]``; discount: ``[B]`` pre-masked ``γ^m(1-d)``; next_q: ``[B]``;
        next_log_prob: ``[B]`` ``log π(a'|s')`` of the sampled next action; alpha: scalar temperature.

    Returns:
        ``[B]`` target. Example: ``R=1, discount=0.5, next_q=2, logp=-1, α=0.1`` → ``1 + 0.5·2.1 = 2.05``.
    """
    return reward + discount * (next_q - alpha * next_log_prob)


# --- critic / actor / temperature losses ---


def critic_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Ensemble TD loss ``(1/K) Σ_k mean_B (Q^k(s,a) - y)²`` (§1(c), §4(c)); the target is detached.

    Note SERL sums over its two heads instead of averaging (§9(c)); multiply by ``K`` to reproduce.

    Args:
        q: ``[K, B]`` online-critic values (a ``[B]`` single critic also works).
        target: ``[B]`` TD target.

    Returns:
        Scalar loss.
    """
    return (q - target.detach()).pow(2).mean()


def deterministic_actor_loss(
    q_reduced: torch.Tensor, delta: torch.Tensor | None = None, l2: float = 0.0
) -> torch.Tensor:
    """DDPG/TD3 actor loss ``-mean_B Q(s, A(s)) + λ·mean_B ‖δ‖²`` (§1(b) step 7b, λ = 0 by default).

    Args:
        q_reduced: ``[B]`` critic value of the actor's action, already reduced over heads (ResFiT: mean).
        delta: ``[B, Da]`` residual, needed only when ``l2 > 0``.
        l2: the penalty weight λ.
    """
    loss = -q_reduced.mean()
    if l2 > 0.0:
        if delta is None:
            raise ValueError("deterministic_actor_loss: l2 > 0 needs delta")
        loss = loss + l2 * delta.pow(2).sum(-1).mean()
    return loss


def sac_actor_loss(
    q_reduced: torch.Tensor, log_prob: torch.Tensor, alpha: torch.Tensor | float
) -> torch.Tensor:
    """SAC actor loss ``mean_B [α·log π(a|s) - Q(s,a)]`` with ``a ~ π`` reparameterized (§4(c), §9(c)).

    Args:
        q_reduced: ``[B]`` (WSRL: min over all heads; SERL: mean); log_prob: ``[B]``;
        alpha: temperature, treated as a constant (detached if a tensor).
    """
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.detach()
    return (alpha * log_prob - q_reduced).mean()


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """Lagrangian temperature loss ``-log α · mean_B(log π + H̄)`` (SB3 form; ``log_prob`` detached).

    If the policy entropy ``-log π`` is below the target ``H̄`` then ``log π + H̄ > 0``, the gradient
    w.r.t. ``log α`` is negative, and gradient descent *raises* α (more exploration), and vice versa.

    Args:
        log_alpha: scalar parameter; log_prob: ``[B]``; target_entropy: ``H̄`` (e.g. ``-Da`` or ``-Da/2``).
    """
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()


def hl_gauss_loss(
    logits: torch.Tensor, target: torch.Tensor, v_min: float, v_max: float, sigma: float
) -> torch.Tensor:
    """HL-Gauss cross-entropy ``-Σ_i p_i(y) log softmax(logits)_i`` averaged over heads and batch (§11.5).

    ``p(y)`` is :func:`robot_rl.core.critics.hl_gauss_projection` of the (detached) scalar target.

    Args:
        logits: ``[K, B, Nb]`` or ``[B, Nb]``.
        target: ``[B]`` scalar TD target (broadcast over heads).
        v_min, v_max: support range; sigma: Gaussian width (ResFiT/Farebrother: 0.75 bin widths).
    """
    probs = hl_gauss_projection(target.detach(), v_min, v_max, logits.shape[-1], sigma)
    return -(probs * F.log_softmax(logits, dim=-1)).sum(-1).mean()


# --- target policy smoothing (ResFiT) ---


def smoothed_target_action(
    next_base: torch.Tensor,
    next_delta_mean: torch.Tensor,
    noise_std: float,
    noise_clip: float,
    generator: torch.Generator | None = None,
    low: float = -1.0,
    high: float = 1.0,
) -> torch.Tensor:
    """TD3 target-policy smoothing for the residual, ALGORITHMS.md §1(b) step 7a exactly.

    ``δ' = clip(δ̄' + clip(N(0, σ²), -c, c), low, high)`` and ``a' = clip(a_b' + δ', low, high)``,
    where ``δ̄' = α·tanh(f_θ'(s', a_b'))`` is the *target* actor's residual (no exploration noise).
    The residual is clipped to the normalized action box ``[-1, 1]`` as in the code (step 5a),
    *not* to ``[-α, α]``.

    Args:
        next_base: ``[B, Da]`` base action at ``s_{t+m}`` (``next_obs/base_action``).
        next_delta_mean: ``[B, Da]`` target-actor residual.
        noise_std: σ of the target noise (normalized action units); noise_clip: c (ResFiT: 0.3).
        generator: torch RNG for the noise (``None``: the global one).

    Returns:
        ``[B, Da]`` smoothed next action ``a'`` for the target critic.
    """
    # drawn on the generator's device (a CPU generator keeps runs reproducible across devices), then moved
    noise_device = generator.device if generator is not None else next_delta_mean.device
    noise = torch.randn(next_delta_mean.shape, generator=generator, device=noise_device)
    noise = noise.to(next_delta_mean.device, next_delta_mean.dtype)
    noise = (noise * noise_std).clamp(-noise_clip, noise_clip)
    delta = (next_delta_mean + noise).clamp(low, high)
    return (next_base + delta).clamp(low, high)


# --- n-step returns (reference implementation, numpy) ---


def n_step_returns(
    rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray, gamma: float, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n-step returns that stop at episode ends (§1(c), §11.4), for one or more consecutive episodes.

    For step ``t`` let ``e`` be the last step of its episode (the first ``u ≥ t`` with
    ``terminated[u] or truncated[u]``; the final array element always counts as an end, like a
    truncation) and ``m = min(n, e - t + 1)``. Then

    - ``R_t = Σ_{i<m} γ^i r_{t+i}``;
    - ``discount_t = γ^m · (1 - terminated[t+m-1])`` if ``t+m-1 == e`` else ``γ^m``: a true
      termination stops the bootstrap, a truncation (time limit) still bootstraps from ``s'_{t+m-1}``;
    - ``next_index_t = t + m - 1``: the step whose ``next_obs`` is the bootstrap state ``s_{t+m}``.

    Args:
        rewards, terminated, truncated: ``[T]`` arrays (flags as bool or 0/1).
        gamma: discount γ; n: horizon (``n ≥ 1``).

    Returns:
        ``(returns [T] float64, discounts [T] float64, next_index [T] int64)``.
    """
    if n < 1:
        raise ValueError(f"n_step_returns: n must be >= 1, got {n}")
    r = np.asarray(rewards, dtype=np.float64)
    term = np.asarray(terminated, dtype=bool)
    ends = term | np.asarray(truncated, dtype=bool)
    T = r.shape[0]
    if T == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64)
    ends = ends.copy()
    ends[-1] = True
    # episode end index for every step: next True at or after t (reverse running minimum)
    end_pos = np.where(ends, np.arange(T), T)
    end_of = np.minimum.accumulate(end_pos[::-1])[::-1]
    t = np.arange(T)
    m = np.minimum(n, end_of - t + 1)
    returns = np.zeros(T)
    for i in range(n):  # n is small (≤ 10); vectorized over T
        valid = i < m
        idx = np.minimum(t + i, T - 1)
        returns += np.where(valid, gamma**i * r[idx], 0.0)
    last = t + m - 1
    stop = (last == end_of) & term[last]
    discounts = np.where(stop, 0.0, gamma ** m.astype(np.float64))
    return returns, discounts, last.astype(np.int64)


def mc_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """Monte-Carlo return-to-go of one *finished* episode, ``G_t = r_t + γ G_{t+1}``, ``G_T = 0``.

    No bootstrap after a truncation (Cal-QL uses this as a lower bound on Q, §4(c), §11.3).

    Args:
        rewards: ``[T]``. Returns: ``[T]`` float64.
    """
    r = np.asarray(rewards, dtype=np.float64)
    out = np.empty_like(r)
    acc = 0.0
    for i in range(r.shape[0] - 1, -1, -1):
        acc = r[i] + gamma * acc
        out[i] = acc
    return out


# --- conservative / offline critic losses (PA-RL, WSRL pre-training, IQL) ---


def calql_regularizer(
    q_data: torch.Tensor,
    q_random: torch.Tensor,
    q_policy: torch.Tensor,
    mc_return: torch.Tensor,
    alpha: torch.Tensor | float,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Cal-QL term ``α·mean_{K,B}[T·logsumexp_{a∈A}(Q(s,a)/T) - Q(s,a_data)]`` (§3(b), §3(c), §4(c), §11.5).

    The logsumexp set ``A`` per head and state is, concatenated on the last axis:
    the ``Nr`` uniform random actions (NOT floored), the ``Np`` policy/candidate actions floored at
    the Monte-Carlo return, ``max(Q(s,a_π), V_MC(s))`` (``use_calql_on_random_actions=False``), and
    the dataset action itself, ``Q(s, a_data)``, appended inside the logsumexp (importance sampling
    off). So the set has ``Nr + Np + 1`` entries. Add the result to the TD loss; ``q_data`` gets
    gradient both inside the logsumexp and through ``-Q(s, a_data)``; ``mc_return`` is a constant.

    Args:
        q_data: ``[K, B]`` online-critic Q of the dataset action.
        q_random: ``[K, B, Nr]`` Q of uniform random actions.
        q_policy: ``[K, B, Np]`` Q of policy/candidate actions (PA-RL: ActOpt at ``s`` and ``s'``).
        mc_return: ``[B]`` discounted return-to-go ``V_MC(s)`` (:func:`mc_returns`), the Cal-QL floor.
        alpha: ``α_cql`` (PA-RL 0.005; WSRL adroit 1, kitchen/locomotion 5); a tensor is kept in the
            graph (auto-tuned α) — detach it yourself if needed.
        temperature: CQL temperature ``T > 0`` (``cql_temp``, 1 in PA-RL/WSRL).

    Returns:
        Scalar. Example (K=B=1): ``Q_data=ln 2``, random ``[0]``, policy ``[ln 0.5, ln 4]``,
        ``V_MC=ln 3`` → set ``{0, ln 3, ln 4, ln 2}`` → ``ln 10 - ln 2 = ln 5`` (times α).
    """
    if temperature <= 0.0:
        raise ValueError(f"calql_regularizer: temperature must be > 0, got {temperature}")
    if q_random.shape[:-1] != q_data.shape or q_policy.shape[:-1] != q_data.shape:
        raise ValueError(
            "calql_regularizer: q_random/q_policy must be q_data.shape + [N], got "
            f"{tuple(q_random.shape)}, {tuple(q_policy.shape)} for q_data {tuple(q_data.shape)}"
        )
    floored = torch.maximum(q_policy, mc_return.detach().to(q_policy.dtype).unsqueeze(-1))
    cat_q = torch.cat([q_random, floored, q_data.unsqueeze(-1)], dim=-1)
    ood = temperature * torch.logsumexp(cat_q / temperature, dim=-1)
    return alpha * (ood - q_data).mean()


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """IQL asymmetric L2 ``mean(|τ - 1(diff < 0)|·diff²)`` (§3(c) IQL variant, τ = 0.7).

    Sign convention: ``diff = target - prediction``. Positive ``diff`` (prediction too low) is
    weighted ``τ``, negative ``1 - τ``; with ``τ > 0.5`` the prediction tracks an upper expectile.
    ``τ = 0.5`` gives half the MSE.

    Args:
        diff: any shape, e.g. ``[B]``; expectile: ``τ ∈ (0, 1)``.

    Returns:
        Scalar. Example: ``diff = [2, -1], τ = 0.7`` → ``(0.7·4 + 0.3·1)/2 = 1.55``.
    """
    if not 0.0 < expectile < 1.0:
        raise ValueError(f"expectile_loss: expectile must be in (0, 1), got {expectile}")
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


def iql_value_loss(q: torch.Tensor, v: torch.Tensor, expectile: float) -> torch.Tensor:
    """IQL value loss ``L_V = mean_B L_2^τ(Q(s,a) - V(s))`` with ``Q`` detached (target-critic value).

    Args:
        q: ``[B]`` critic value of the dataset action, already reduced over heads (e.g. min);
        v: ``[B]`` value network output; expectile: ``τ ∈ (0, 1)``.
    """
    return expectile_loss(q.detach() - v, expectile)


def awr_weights(q: torch.Tensor, v: torch.Tensor, beta: float, max_weight: float = 100.0) -> torch.Tensor:
    """IQL/AWR policy-extraction weights ``min(exp(β·(Q - V)), w_max)``, detached.

    Computed as ``exp(min(β·(Q - V), log w_max))`` so large advantages never overflow to ``inf``.

    Args:
        q: ``[B]`` reduced critic value; v: ``[B]`` value; beta: inverse temperature β (> 0 in IQL);
        max_weight: clip ``w_max > 0`` (IQL: 100).

    Returns:
        ``[B]`` weights for the weighted log-likelihood ``-mean_B w·log π(a|s)``.
    """
    if max_weight <= 0.0:
        raise ValueError(f"awr_weights: max_weight must be > 0, got {max_weight}")
    adv = (q - v).detach()
    return torch.exp((beta * adv).clamp(max=math.log(max_weight)))
