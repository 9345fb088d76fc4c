"""Candidate actions: propose, edit, rank, locally optimize, select (ALGORITHMS.md §11.7).

The building blocks of acting and TD targets by re-ranking base-policy samples with a critic:

- EXPO's on-the-fly policy (§2(b)) is ``propose → edit → select(argmax)`` over the union of the raw
  and the edited samples;
- PA-RL's ActOpt (§3(b)) is ``propose (+ dataset action) → rank (top-k) → local_optimize →
  select (argmax to act, softmax to pick a distillation target)``.

All functions are pure (no module state) and batched: ``B`` states, ``N`` candidates per state,
``Da`` action dim; candidates are single control-step actions in the normalized ``[-1, 1]`` box.
Scores are critic values reduced over heads by a :class:`~robot_rl.core.critics.Reduction`.
"""

from __future__ import annotations

from typing import Any

import torch

from robot_rl.core.critics import CriticEnsemble, Reduction


def propose(
    base: Any,
    obs_state: torch.Tensor,
    n: int,
    dataset_action: torch.Tensor | None = None,
    use_ema: bool | None = None,
) -> torch.Tensor:
    """``n`` base samples per state in one batched call: ``[B, n, Da]`` (the first action of each
    sampled chunk), clipped to ``[-1, 1]``.

    ``obs_state [B, To, Ds]``: the base's observation history. ``dataset_action [B, Da]`` (PA-RL's
    distillation targets): appended as candidate ``n`` (the result is then ``[B, n+1, Da]``), which
    anchors the choice near the data while the critic is unsure (§3(f)). ``use_ema``: forwarded to a
    base whose ``sample`` takes it (diffusion acts with EMA weights, EXPO's TD target uses the
    current ones); ``None`` keeps the base's default.
    """
    kwargs = {} if use_ema is None else {"use_ema": use_ema}
    chunks = base.sample({"obs_state": obs_state}, n, **kwargs)  # [B, n, Ta, Da]
    actions = chunks[:, :, 0].clamp(-1.0, 1.0)
    if dataset_action is not None:
        actions = torch.cat([actions, dataset_action[:, None].to(actions)], dim=1)
    return actions


def edit(
    edit_head: torch.nn.Module,
    features: torch.Tensor,
    candidates: torch.Tensor,
    deterministic: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """EXPO's bounded edit ``ã = clip(a + β·ε, -1, 1)`` of every candidate (§2(b) step 2, §2(f)).

    ``edit_head``: a :class:`~robot_rl.core.actor_heads.TanhGaussianHead` with ``scale = β`` that reads
    ``[features, a]``; ``features [B, F]`` (the normalized state), ``candidates [B, N, Da]``.
    Returns ``(edited [B, N, Da], log_prob [B, N])``; the log-density is of the unclipped ``β·ε``
    (with the ``-Da·log β`` change of variables). Clipping happens before any critic sees the action.
    """
    b, n, da = candidates.shape
    x = torch.cat([features[:, None].expand(-1, n, -1), candidates], dim=-1).reshape(b * n, -1)
    delta, log_prob, mean = edit_head(x, deterministic=deterministic, generator=generator)
    step = mean if deterministic else delta
    edited = (candidates + step.view(b, n, da)).clamp(-1.0, 1.0)
    return edited, log_prob.view(b, n)


def score(
    critic: CriticEnsemble,
    features: torch.Tensor,
    candidates: torch.Tensor,
    reduction: Reduction,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Reduced critic value of every candidate: ``features [B, F]``, ``candidates [B, N, Da] -> [B, N]``.

    A ``min_subset`` reduction draws one subset of heads for the whole call (EXPO §2(b) step 4)."""
    n = candidates.shape[1]
    return reduction.of_critic(critic, features[:, None].expand(-1, n, -1), candidates, generator)


def rank(scores: torch.Tensor, candidates: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-``k`` candidates by score (PA-RL's global step, §3(c)): ``(scores [B, k], candidates
    [B, k, Da])``, best first. ``k`` larger than ``N`` keeps all ``N``."""
    k = min(k, candidates.shape[1])
    top, idx = scores.topk(k, dim=1)
    return top, candidates.gather(1, idx[..., None].expand(-1, -1, candidates.shape[-1]))


def local_optimize(
    critic: CriticEnsemble,
    features: torch.Tensor,
    candidates: torch.Tensor,
    steps: int,
    step_size: float,
    reduction: Reduction | str = "mean",
    low: float = -1.0,
    high: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PA-RL's local step (§3(c)): ``a ← clip(a + η ∇_a Q̄(s, a), low, high)`` for ``steps`` steps on
    every candidate, keeping per candidate the iterate with the highest ``Q̄`` (the start included),
    so no candidate ever scores lower than it started under this critic.

    ``reduction`` must be deterministic (``mean`` or ``min``; PA-RL uses the ensemble mean).
    Returns ``(best_scores [B, N], best_candidates [B, N, Da])``. No gradient reaches the critic.
    """
    reduction = Reduction.parse(reduction)
    if reduction.kind == "min_subset":
        raise ValueError("local_optimize needs a deterministic reduction (mean or min), got min_subset")
    n = candidates.shape[1]
    feats = features.detach()[:, None].expand(-1, n, -1)
    params = [p for p in critic.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            a = candidates.detach().clone().requires_grad_(True)
            q = reduction(critic(feats, a))
            best_q, best_a = q.detach().clone(), a.detach().clone()
            for _ in range(steps):
                (grad,) = torch.autograd.grad(q.sum(), a)
                a = (a.detach() + step_size * grad).clamp(low, high).requires_grad_(True)
                q = reduction(critic(feats, a))
                better = q.detach() > best_q
                best_q = torch.where(better, q.detach(), best_q)
                best_a = torch.where(better[..., None], a.detach(), best_a)
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
    return best_q, best_a


def select(
    scores: torch.Tensor,
    candidates: torch.Tensor,
    mode: str = "argmax",
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One candidate per state ``[B, Da]``: ``argmax`` of the scores, or a draw from
    ``softmax(scores / temperature)`` (PA-RL's distillation target, §3(c))."""
    if mode == "argmax":
        idx = scores.argmax(dim=1)
    elif mode == "softmax":
        if not temperature > 0:
            raise ValueError(f"select: softmax temperature must be > 0, got {temperature}")
        probs = torch.softmax(scores / temperature, dim=1)
        idx = torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0].to(scores.device)
    else:
        raise ValueError(f"select: unknown mode {mode!r}; use argmax or softmax")
    return candidates[torch.arange(candidates.shape[0], device=candidates.device), idx]
