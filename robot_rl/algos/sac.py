"""``sac``: Soft Actor-Critic from scratch (Haarnoja et al., 2018, arXiv:1812.05905) — a baseline.

Twin critics (an ensemble of K=2 with the clipped-double-Q min), tanh-Gaussian actor, learned
temperature toward the entropy target ``-Da``. The same class with RLPD's defaults (prior data in
every batch, a LayerNorm ensemble of 10, REDQ min over 2) is ``rlpd`` (``robot_rl/algos/rlpd.py``).

Shapes: ``B`` batch, ``K`` critic heads, ``Ds`` state dim, ``Da`` action dim.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from robot_rl.algos import ALGOS
from robot_rl.core.actor_heads import LearnedTemperature, TanhGaussianHead
from robot_rl.core.algorithm import (
    OnlineAlgoConfig,
    StatefulModules,
    adam,
    check_finite_loss,
    critic_metrics,
    frozen,
    metrics_to_floats,
    optimizer_step,
)
from robot_rl.core.critics import CriticEnsemble, Reduction, check_reductions, polyak_update
from robot_rl.core.losses import critic_loss, sac_actor_loss, soft_td_target, td_target
from robot_rl.core.networks import StateNormalizer
from robot_rl.core.types import STATE_KEY, ActionSpec, ObsSpec
from robot_rl.core.validation import check, check_positive


@dataclass(frozen=True)
class SACConfig(OnlineAlgoConfig):
    name: str = "sac"
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    temperature_lr: float = 3e-4
    init_temperature: float = 1.0
    target_entropy_scale: float = 1.0  # target entropy = -scale · Da
    hidden_dims: list[int] = field(default_factory=lambda: [256, 256])
    num_critics: int = 2  # K
    layer_norm: bool = False
    target_reduction: str = "min"  # over heads for the TD target: min | mean | min_subset:M
    actor_reduction: str = "min"  # over heads for the actor loss
    warmup_env_steps: int = 5000  # uniform random actions before learning
    backup_entropy: bool = True  # soft TD target (−α log π at s'); False: plain TD target

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("actor_lr", "critic_lr", "temperature_lr", "init_temperature", "num_critics"):
            check_positive(f"algo.{name}", getattr(self, name))
        check(
            all(h > 0 for h in self.hidden_dims), f"algo.hidden_dims must be positive, got {self.hidden_dims}"
        )
        check_reductions(self, "target_reduction", "actor_reduction")


@ALGOS.register("sac", SACConfig)
class SAC(StatefulModules):
    online = True

    def __init__(
        self,
        cfg: SACConfig,
        obs_spec: ObsSpec,
        action_spec: ActionSpec,
        base_policy: Any = None,
        device: torch.device | str = "cpu",
    ):
        self.cfg = cfg
        self.obs_spec, self.action_spec = obs_spec, action_spec
        self.device = torch.device(device)
        ds, da = obs_spec.state_dim, action_spec.dim
        self.normalizer = StateNormalizer(ds).to(self.device)
        self.actor = TanhGaussianHead(ds, da, cfg.hidden_dims, layer_norm=cfg.layer_norm).to(self.device)
        self.critic = CriticEnsemble(ds, da, cfg.num_critics, cfg.hidden_dims, cfg.layer_norm).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.temperature = LearnedTemperature(cfg.init_temperature, -cfg.target_entropy_scale * da).to(
            self.device
        )
        self.actor_opt = adam(self.actor.parameters(), cfg.actor_lr)
        self.critic_opt = adam(self.critic.parameters(), cfg.critic_lr)
        self.temperature_opt = adam(self.temperature.parameters(), cfg.temperature_lr)
        self.target_reduction = Reduction.parse(cfg.target_reduction)
        self.actor_reduction = Reduction.parse(cfg.actor_reduction)
        self.generator = torch.Generator().manual_seed(0)  # REDQ subset draws
        self.updates = 0

    # --- environment side ---

    # learns from the executed action in the env's own action space, so a teleop intervention's
    # action can be stored as is (the trainer checks this before wrapping the env for teleop)
    learns_executed_actions = True

    @classmethod
    def wrap_env(cls, env: gym.Env, base_policy: Any = None) -> gym.Env:
        return env

    def fit_normalizer(self, states: np.ndarray) -> None:
        self.normalizer.fit(torch.as_tensor(states, dtype=torch.float32, device=self.device))

    def warmup_action(self, obs: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, self.action_spec.dim).astype(np.float32)

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray], deterministic: bool = False) -> np.ndarray:
        s = self.normalizer(torch.as_tensor(obs[STATE_KEY], dtype=torch.float32, device=self.device)[None])
        action, _, mean = self.actor(s)
        return (mean if deterministic else action)[0].cpu().numpy()

    # --- learning ---

    def update(self, batch: dict[str, torch.Tensor], update_actor: bool = True) -> dict[str, float]:
        s = self.normalizer(batch[f"obs/{STATE_KEY}"])
        s2 = self.normalizer(batch[f"next_obs/{STATE_KEY}"])
        alpha = self.temperature.alpha
        with torch.no_grad():
            a2, logp2, _ = self.actor(s2)
            next_q = self.target_reduction.of_critic(self.critic_target, s2, a2, self.generator)
            # n-step soft target: discount already holds γ^m(1-d); entropy bonus at s_{t+m} only
            if self.cfg.backup_entropy:
                target = soft_td_target(batch["reward"], batch["discount"], next_q, logp2, alpha)
            else:  # WSRL, EXPO, PA-RL: no entropy bonus in the target
                target = td_target(batch["reward"], batch["discount"], next_q)
        q = self.critic(s, batch["action"])
        loss_q = critic_loss(q, target)
        regularizer = self.critic_regularizer(s, s2, batch, q)
        if regularizer is not None:
            loss_q = loss_q + regularizer
        check_finite_loss(loss_q, self.updates, batch)
        optimizer_step(self.critic_opt, loss_q, self.critic.parameters(), self.cfg.grad_clip)
        polyak_update(self.critic_target, self.critic, self.cfg.tau)
        metrics: dict[str, Any] = critic_metrics(q, target, batch["is_demo"], loss_q)
        if regularizer is not None:
            metrics["loss/cql"] = regularizer
        if update_actor:
            action, logp, _ = self.actor(s)
            with frozen(self.critic):  # gradients flow to the action only
                q_pi = self.actor_reduction.of_critic(self.critic, s, action, self.generator)
            loss_pi = sac_actor_loss(q_pi, logp, alpha)
            optimizer_step(self.actor_opt, loss_pi, self.actor.parameters(), self.cfg.grad_clip)
            loss_t = self.temperature.loss(logp)
            optimizer_step(self.temperature_opt, loss_t, self.temperature.parameters())
            metrics.update(
                {
                    "loss/actor": loss_pi,
                    "loss/temperature": loss_t,
                    "train/alpha": alpha,
                    "train/entropy": -logp.mean(),
                }
            )
        self.updates += 1
        return metrics_to_floats(metrics)

    def critic_regularizer(
        self, s: torch.Tensor, s2: torch.Tensor, batch: dict[str, torch.Tensor], q: torch.Tensor
    ) -> torch.Tensor | None:
        """A term added to the critic loss (normalized states ``s``, ``s2``; ``q [K, B]``); plain SAC has
        none, WSRL adds Cal-QL during its offline pre-training."""
        return None

    # --- state ---

    def _modules(self) -> dict[str, Any]:
        return {
            "normalizer": self.normalizer,
            "actor": self.actor,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "temperature": self.temperature,
            "actor_opt": self.actor_opt,
            "critic_opt": self.critic_opt,
            "temperature_opt": self.temperature_opt,
        }

    def export_bundle(self, path: str | Path, **metadata: Any) -> Path:
        from robot_rl.deploy.bundle import save_bundle
        from robot_rl.policies.tanh_gaussian import TanhGaussianPolicy, TanhGaussianPolicyConfig

        policy = TanhGaussianPolicy(
            TanhGaussianPolicyConfig(hidden_dims=list(self.cfg.hidden_dims), layer_norm=self.cfg.layer_norm),
            self.obs_spec,
            self.action_spec,
        )
        policy.normalizer.load_state_dict(self.normalizer.state_dict())
        policy.actor.load_state_dict(self.actor.state_dict())
        return save_bundle(path, policy, **metadata)
