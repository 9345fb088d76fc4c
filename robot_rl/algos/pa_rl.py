"""``pa_rl``: PA-RL — "Policy Agnostic RL" (Sobol Mark et al., 2024; ALGORITHMS.md §3) with a Cal-QL
critic.

Policy improvement is "optimize actions, then distill": no gradient goes through the base, so any
policy with ``sample`` and ``bc_loss`` works (diffusion, chunked BC, later a VLA).

ActOpt(s) (:mod:`robot_rl.core.candidates`): ``num_samples`` base samples (EMA weights) → keep the
``top_k`` by the ensemble-mean Q ("global") → ``local_steps`` steps of gradient ascent on the action,
clipped to the box, best iterate kept ("local") → argmax (acting, TD targets) or a draw from
``softmax(Q / distill_temperature)`` (distillation targets, with the replayed dataset action injected
as a candidate).

``algo.critic=iql`` swaps the Cal-QL critic for IQL (expectile ``algo.expectile`` value network,
``Q ← r + γ V(s')``): cheaper, as its target needs no next action.

Phases in the one training loop: env warm-up = base rollouts (plain samples, no updates, the
"base rollouts" of §3(g) that give Cal-QL negatives); critic warm-up = offline Cal-QL pre-training
with the base frozen; the first online update resets the critic optimizer (PA-RL PR #1); online,
per env step: a Cal-QL critic update and (on the UTD group's last batch) one distillation step of the
base with its own loss on ``(s, a*)``.

Deviations (CPU budgets; docs/rl.md "PA-RL"): N = 16 samples, top-4, 3 local steps (PA-RL 32/10/10);
the local step size and the softmax temperature are scaled to our 0/1 rewards (Q ∈ [0, 1] instead of
PA-RL's [−100, 0]: η 0.01 and temperature 0.01 instead of 3e-4 and 1); the Cal-QL policy actions are
ActOpt(s) and ActOpt(s') once each (PA-RL: 10 copies of each, which only adds ``log 10`` inside the
logsumexp); plain MSE TD loss (HL-Gauss optional in PA-RL's code).

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
from robot_rl.core.algorithm import (
    OnlineAlgoConfig,
    adam,
    base_imitation_step,
    check_finite_loss,
    critic_metrics,
    metrics_to_floats,
    optimizer_step,
)
from robot_rl.core.critics import CriticEnsemble, Reduction, check_reductions, polyak_update
from robot_rl.core.losses import calql_regularizer, critic_loss, iql_value_loss, td_target
from robot_rl.core.networks import mlp
from robot_rl.core.types import STATE_KEY, ActionSpec, ObsSpec
from robot_rl.core.validation import check, check_positive


@dataclass(frozen=True)
class PARLConfig(OnlineAlgoConfig):
    """Defaults: ALGORITHMS.md §3(d) scaled as §3(g) suggests (deviations in the module docstring)."""

    name: str = "pa_rl"
    num_samples: int = 16  # N_b base samples per ActOpt (PA-RL 32)
    top_k: int = 4  # kept by the global step (PA-RL 10)
    local_steps: int = 3  # gradient-ascent steps on the kept actions (PA-RL 10); 0 = global only
    local_step_size: float = 0.01  # η on Q ∈ [0, 1] (PA-RL 3e-4 on Q ∈ [−100, 0])
    distill_temperature: float = 0.01  # softmax over Q for the distillation target (PA-RL 1 on its scale)
    num_critics: int = 5  # K (PA-RL 10)
    target_reduction: str = "min_subset:2"  # the TD target's reduction over heads (PA-RL: 2 random)
    hidden_dims: list[int] = field(default_factory=lambda: [256, 256])
    layer_norm: bool = True
    critic_lr: float = 3e-4
    base_lr: float = 5e-5  # distillation lr (PA-RL fine-tune lr, no decay)
    critic: str = "calql"  # calql | iql (PA-RL's two critics)
    expectile: float = 0.7  # IQL's τ
    cql_alpha: float = 0.005  # α_cql (PA-RL 0.005; §3(g): 0.005-0.05)
    cql_random_actions: int = 4  # uniform actions in the logsumexp (PA-RL 10)
    n_step: int = 1
    utd: int = 1  # critic_utd = base_policy_utd = 1
    batch_size: int = 64  # PA-RL 256
    prior_fraction: float = 0.5  # mixing ratio 0.5
    warmup_env_steps: int = 2000  # base rollouts before any update (§3(g): ~20 episodes)
    critic_warmup_updates: int = 3000  # offline Cal-QL pre-training, base frozen (§3(g): 20-50k)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_samples", "top_k", "num_critics", "critic_lr", "base_lr", "distill_temperature"):
            check_positive(f"algo.{name}", getattr(self, name))
        for name in ("local_steps", "local_step_size", "cql_alpha", "cql_random_actions"):
            check_positive(f"algo.{name}", getattr(self, name), allow_zero=True)
        check(
            self.top_k <= self.num_samples,
            f"algo.top_k={self.top_k} exceeds algo.num_samples={self.num_samples}",
        )
        check_reductions(self, "target_reduction")
        check(self.critic in ("calql", "iql"), f"algo.critic must be calql or iql, got {self.critic!r}")
        check(0.0 < self.expectile < 1.0, f"algo.expectile must be in (0, 1), got {self.expectile}")


@ALGOS.register("pa_rl", PARLConfig)
class PARL(RerankAgent):
    needs_mc_return = True  # the Cal-QL floor: the trainer samples only steps of closed episodes

    def __init__(
        self,
        cfg: PARLConfig,
        obs_spec: ObsSpec,
        action_spec: ActionSpec,
        base_policy: Any,
        device: torch.device | str = "cpu",
    ):
        # the acting policy (ActOpt + argmax) shares the base, the normalizer and the online critic
        self._build_agent(
            cfg,
            obs_spec,
            action_spec,
            base_policy,
            device,
            "algo=pa_rl",
            top_k=cfg.top_k,
            local_steps=cfg.local_steps,
            local_step_size=cfg.local_step_size,
            reduction="mean",  # PA-RL ranks, optimizes and selects on the ensemble mean
        )
        self.normalizer, self.critic = self.agent.normalizer, self.agent.critic
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.critic_opt = adam(self.critic.parameters(), cfg.critic_lr)
        self.base_opt = adam(self.base.parameters(), cfg.base_lr)
        # IQL's state value V(s) (built for both critics so checkpoints have one layout)
        self.value = mlp(obs_spec.state_dim, cfg.hidden_dims, 1, layer_norm=cfg.layer_norm).to(self.device)
        self.value_opt = adam(self.value.parameters(), cfg.critic_lr)
        self.target_reduction = Reduction.parse(cfg.target_reduction)
        self.mean = Reduction.parse("mean")
        self.online_started = False  # set by the first update that trains the base
        self.updates = 0

    # --- ActOpt ---

    def act_opt(
        self, s: torch.Tensor, critic: CriticEnsemble, dataset_action: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Optimized candidates and their mean-Q scores ``([B, k], [B, k, Da])`` for raw states ``s``.
        With ``dataset_action`` the worst kept candidate is replaced by it (§3(b) step 3)."""
        cfg, feats = self.cfg, self.normalizer(s)
        with torch.no_grad():
            pool = cand.propose(self.base, s[:, None], cfg.num_samples)
            _, pool = cand.rank(cand.score(critic, feats, pool, self.mean), pool, cfg.top_k)
            if dataset_action is not None:
                pool = torch.cat([pool[:, :-1], dataset_action[:, None]], dim=1)
        if cfg.local_steps:
            return cand.local_optimize(critic, feats, pool, cfg.local_steps, cfg.local_step_size, "mean")
        with torch.no_grad():
            return cand.score(critic, feats, pool, self.mean), pool

    # --- learning ---

    def update(self, batch: dict[str, torch.Tensor], update_actor: bool = True) -> dict[str, float]:
        cfg = self.cfg
        if update_actor and not self.online_started:  # offline -> online: fresh critic optimizer state
            self.critic_opt = adam(self.critic.parameters(), cfg.critic_lr)
            self.online_started = True
        s, a = batch[f"obs/{STATE_KEY}"], batch["action"]
        # ActOpt(s), with the dataset action among the candidates when distilling (§3(b) step b); an
        # IQL critic needs it only for distillation, Cal-QL also for its conservative term
        if update_actor or cfg.critic == "calql":
            q1_scores, pool1 = self.act_opt(s, self.critic, dataset_action=a if update_actor else None)
        if cfg.critic == "calql":
            metrics = self._calql_update(batch, cand.select(q1_scores, pool1, "argmax"))
        else:
            metrics = self._iql_update(batch)
        if update_actor:  # distill a softmax-drawn optimized action (dataset action among the candidates)
            a_star = cand.select(q1_scores, pool1, "softmax", cfg.distill_temperature, self.generator)
            loss_b = base_imitation_step(self.base, self.base_opt, s, a_star, cfg.grad_clip, self.updates)
            metrics.update({"loss/base": loss_b, "train/distill_shift": (a_star - a).abs().mean()})
        self.updates += 1
        return metrics_to_floats(metrics)

    def _calql_update(self, batch: dict[str, torch.Tensor], a1: torch.Tensor) -> dict[str, Any]:
        """TD to ``r + γ min_2 Q'(s', ActOpt(s'))`` plus Cal-QL over uniform actions and the ActOpt
        actions at ``s`` (``a1``) and ``s'``, floored at the MC return (§3(b), §3(c))."""
        cfg = self.cfg
        s, a, s2 = batch[f"obs/{STATE_KEY}"], batch["action"], batch[f"next_obs/{STATE_KEY}"]
        ns, ns2 = self.normalizer(s), self.normalizer(s2)
        b, da = a.shape
        q2_scores, pool2 = self.act_opt(s2, self.critic)
        a2 = cand.select(q2_scores, pool2, "argmax")
        with torch.no_grad():
            next_q = self.target_reduction.of_critic(self.critic_target, ns2, a2, self.generator)
            target = td_target(batch["reward"], batch["discount"], next_q)
            rand = torch.rand((b, cfg.cql_random_actions, da), generator=self.generator).to(a) * 2 - 1
        q = self.critic(ns, a)
        policy_actions = torch.stack([a1, a2], dim=1)  # [B, 2, Da], both scored at s
        q_policy = self.critic(ns[:, None].expand(-1, 2, -1), policy_actions)
        q_random = self.critic(ns[:, None].expand(-1, cfg.cql_random_actions, -1), rand)
        loss_cql = calql_regularizer(q, q_random, q_policy, batch["mc_return"], cfg.cql_alpha)
        loss_q = critic_loss(q, target) + loss_cql
        check_finite_loss(loss_q, self.updates, batch)
        optimizer_step(self.critic_opt, loss_q, self.critic.parameters(), cfg.grad_clip)
        polyak_update(self.critic_target, self.critic, cfg.tau)
        return critic_metrics(q, target, batch["is_demo"], loss_q) | {"loss/cql": loss_cql}

    def _iql_update(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """IQL: ``V`` regresses the min-over-heads target Q with the expectile loss; Q regresses
        ``r + γ V(s')`` — no next action is needed, so no ActOpt at ``s'`` (§3(c), IQL variant)."""
        cfg = self.cfg
        s, a, s2 = batch[f"obs/{STATE_KEY}"], batch["action"], batch[f"next_obs/{STATE_KEY}"]
        ns, ns2 = self.normalizer(s), self.normalizer(s2)
        with torch.no_grad():
            q_target = self.critic_target(ns, a).min(0).values
            target = td_target(batch["reward"], batch["discount"], self.value(ns2).squeeze(-1))
        loss_v = iql_value_loss(q_target, self.value(ns).squeeze(-1), cfg.expectile)
        optimizer_step(self.value_opt, loss_v, self.value.parameters(), cfg.grad_clip)
        q = self.critic(ns, a)
        loss_q = critic_loss(q, target)
        check_finite_loss(loss_q, self.updates, batch)
        optimizer_step(self.critic_opt, loss_q, self.critic.parameters(), cfg.grad_clip)
        polyak_update(self.critic_target, self.critic, cfg.tau)
        return critic_metrics(q, target, batch["is_demo"], loss_q) | {"loss/value": loss_v}

    # --- state ---

    def _modules(self) -> dict[str, Any]:
        return {
            "normalizer": self.normalizer,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "critic_opt": self.critic_opt,
            "base_opt": self.base_opt,
            "value": self.value,
            "value_opt": self.value_opt,
        }

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "online_started": self.online_started}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.online_started = bool(state["online_started"])
