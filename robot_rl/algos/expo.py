"""``expo``: EXPO — "Stable RL with Expressive Policies" (Dong, Li, Sadigh, Finn, 2025;
ALGORITHMS.md §2).

No gradient of Q ever goes through the base (a diffusion policy, or any policy with ``sample``). Two
policies work together:

- the **base**, trained only by imitation (its own ``bc_loss``) on the same 50/50 demo/online
  batches as the critic — the online half holds the actions the agent chose, so the base slowly
  imitates its own improved behaviour; acting uses its EMA weights, TD targets its current ones;
- the **edit policy**, a light tanh-Gaussian ``π_e(ε | s, a)`` scaled by β, trained SAC-style on
  replay actions to raise ``mean_k Q`` with an entropy bonus (target entropy ``-Da/2``).

The **on-the-fly (OTF) policy** draws N base samples, edits the first ``num_edits``, clips the edited
actions to the box, and takes the argmax over raw ∪ edited candidates of a min over a random subset
of target-critic heads. It acts and it builds the TD target (``otf_target``; False is the ablation
"standard target": one base sample, no argmax). The deployable result is a
:class:`~robot_rl.policies.rerank.RerankPolicy` (base + edit head + target critic).

Deviations from the official code (CPU budgets; docs/rl.md "EXPO"): single-step base
(``obs_horizon = chunk_size = 1``, as the official code), UTD 1 with batch 64 instead of 20 × 256,
K = 5 heads, 3-step returns, and the env warm-up acts with one plain base sample (no random actions:
the base is pre-trained), followed by critic-only warm-up updates.

Shapes: ``B`` batch, ``N`` candidates, ``K`` critic heads, ``Ds`` state dim, ``Da`` action dim.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch

from robot_rl.algos import ALGOS
from robot_rl.algos.rerank_agent import RerankAgent
from robot_rl.core import candidates as cand
from robot_rl.core.actor_heads import LearnedTemperature
from robot_rl.core.algorithm import (
    OnlineAlgoConfig,
    adam,
    base_imitation_step,
    check_finite_loss,
    critic_metrics,
    frozen,
    metrics_to_floats,
    optimizer_step,
)
from robot_rl.core.critics import CriticEnsemble, Reduction, check_reductions, polyak_update
from robot_rl.core.losses import critic_loss, sac_actor_loss, td_target
from robot_rl.core.types import STATE_KEY, ActionSpec, ObsSpec
from robot_rl.core.validation import check, check_positive


@dataclass(frozen=True)
class EXPOConfig(OnlineAlgoConfig):
    """Defaults: ALGORITHMS.md §2(d) scaled to CPU as §2(g) suggests (deviations in the module docstring)."""

    name: str = "expo"
    num_samples: int = 8  # N base samples per OTF call (EXPO scripts: 8)
    num_edits: int = 8  # n_edit ≤ N; 0 = best-of-N only (the "no edit" ablation)
    edit_scale: float = 0.1  # β (EXPO: 0.05 robomimic, 0.1 square with pre-training)
    otf_target: bool = True  # False: TD target from one base sample (the "standard target" ablation)
    num_critics: int = 5  # K (EXPO 10)
    target_reduction: str = "min_subset:2"  # TD target and OTF selection (EXPO num_min_qs = 2)
    edit_reduction: str = "mean"  # the edit policy's Q (EXPO: mean over all online heads)
    hidden_dims: list[int] = field(default_factory=lambda: [256, 256])  # critic and edit MLPs
    layer_norm: bool = True
    critic_lr: float = 3e-4
    edit_lr: float = 3e-4
    base_lr: float = 1e-4  # the base's imitation updates online (EXPO 3e-4 with cosine decay)
    temperature_lr: float = 3e-4
    init_temperature: float = 1.0
    target_entropy_scale: float = 0.5  # H̄ = -scale · Da (EXPO −Da/2)
    n_step: int = 3  # EXPO 1
    utd: int = 1  # EXPO 20
    batch_size: int = 64  # EXPO 256 per critic minibatch
    prior_fraction: float = 0.5
    warmup_env_steps: int = 1000  # plain base samples, no updates
    critic_warmup_updates: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_samples", "edit_scale", "num_critics", "critic_lr", "edit_lr", "base_lr"):
            check_positive(f"algo.{name}", getattr(self, name))
        for name in ("temperature_lr", "init_temperature"):
            check_positive(f"algo.{name}", getattr(self, name))
        check_positive("algo.num_edits", self.num_edits, allow_zero=True)
        check(
            self.num_edits <= self.num_samples,
            f"algo.num_edits={self.num_edits} exceeds algo.num_samples={self.num_samples}",
        )
        check_reductions(self, "target_reduction", "edit_reduction")


@ALGOS.register("expo", EXPOConfig)
class EXPO(RerankAgent):
    def __init__(
        self,
        cfg: EXPOConfig,
        obs_spec: ObsSpec,
        action_spec: ActionSpec,
        base_policy: Any,
        device: torch.device | str = "cpu",
    ):
        # the OTF policy: shares the base, the edit head, the state normalizer and (as its scoring
        # critic) the target critic with this algorithm
        self._build_agent(
            cfg,
            obs_spec,
            action_spec,
            base_policy,
            device,
            "algo=expo",
            num_edits=cfg.num_edits,
            edit_scale=cfg.edit_scale,
            edit_hidden_dims=list(cfg.hidden_dims),
            reduction=cfg.target_reduction,
        )
        self.normalizer, self.edit = self.agent.normalizer, self.agent.edit
        self.critic = CriticEnsemble(
            obs_spec.state_dim, action_spec.dim, cfg.num_critics, cfg.hidden_dims, cfg.layer_norm
        ).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.agent.critic = self.critic_target
        self.temperature = LearnedTemperature(
            cfg.init_temperature, -cfg.target_entropy_scale * action_spec.dim
        ).to(self.device)
        self.critic_opt = adam(self.critic.parameters(), cfg.critic_lr)
        self.edit_opt = adam(self.edit.parameters(), cfg.edit_lr)
        self.temperature_opt = adam(self.temperature.parameters(), cfg.temperature_lr)
        self.base_opt = adam(self.base.parameters(), cfg.base_lr, weight_decay=1e-6, decoupled=True)
        self.target_reduction = Reduction.parse(cfg.target_reduction)
        self.edit_reduction = Reduction.parse(cfg.edit_reduction)
        self.updates = 0

    # --- learning ---

    def update(self, batch: dict[str, torch.Tensor], update_actor: bool = True) -> dict[str, float]:
        cfg = self.cfg
        s, a, s2 = batch[f"obs/{STATE_KEY}"], batch["action"], batch[f"next_obs/{STATE_KEY}"]
        ns, ns2 = self.normalizer(s), self.normalizer(s2)
        with torch.no_grad():  # §2(b): a' = OTF(s') with the current (not EMA) base and the target critic
            if cfg.otf_target:
                a2 = self.agent.choose(s2, use_ema=False)
            else:
                a2 = cand.propose(self.base, s2[:, None], 1, use_ema=False)[:, 0]
            next_q = self.target_reduction.of_critic(self.critic_target, ns2, a2, self.generator)
            target = td_target(batch["reward"], batch["discount"], next_q)
        q = self.critic(ns, a)
        loss_q = critic_loss(q, target)
        check_finite_loss(loss_q, self.updates, batch)
        optimizer_step(self.critic_opt, loss_q, self.critic.parameters(), cfg.grad_clip)
        polyak_update(self.critic_target, self.critic, cfg.tau)
        metrics: dict[str, Any] = critic_metrics(q, target, batch["is_demo"], loss_q)
        if update_actor:  # on the last minibatch of the UTD group: base imitation, edit, temperature
            metrics.update(self._update_base(s, a))
            if cfg.num_edits:
                metrics.update(self._update_edit(ns, a))
        self.updates += 1
        return metrics_to_floats(metrics)

    def _update_base(self, s: torch.Tensor, a: torch.Tensor) -> dict[str, torch.Tensor]:
        """The base imitates the batch's executed actions (EXPO trains it on all replayed data)."""
        loss = base_imitation_step(self.base, self.base_opt, s, a, self.cfg.grad_clip, self.updates)
        return {"loss/base": loss}

    def _update_edit(self, ns: torch.Tensor, a: torch.Tensor) -> dict[str, torch.Tensor]:
        """§2(c): ``L_e = E[α log p(βε) − mean_k Q(s, clip(a + βε))]`` on replay actions ``a``."""
        edited, log_prob = cand.edit(self.edit, ns, a[:, None], generator=self.generator)
        with frozen(self.critic):
            q_edit = self.edit_reduction.of_critic(self.critic, ns, edited[:, 0], self.generator)
        loss_e = sac_actor_loss(q_edit, log_prob[:, 0], self.temperature.alpha)
        optimizer_step(self.edit_opt, loss_e, self.edit.parameters(), self.cfg.grad_clip)
        loss_t = self.temperature.loss(log_prob[:, 0])
        optimizer_step(self.temperature_opt, loss_t, self.temperature.parameters())
        return {
            "loss/edit": loss_e,
            "loss/temperature": loss_t,
            "train/temperature": self.temperature.alpha,
            "train/edit_abs": (edited[:, 0] - a).detach().abs().mean(),
            "train/edit_entropy": -log_prob.detach().mean(),
        }

    # --- state ---

    def _modules(self) -> dict[str, Any]:
        return {
            "normalizer": self.normalizer,
            "edit": self.edit,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "temperature": self.temperature,
            "critic_opt": self.critic_opt,
            "edit_opt": self.edit_opt,
            "temperature_opt": self.temperature_opt,
            "base_opt": self.base_opt,
        }
