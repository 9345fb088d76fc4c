"""``rerank``: a base policy whose samples are re-ranked by a critic — the deployable output of the
policy-agnostic fine-tuning methods (``algo=expo``: EXPO; PA-RL; docs/rl.md).

``act(obs)``: draw ``num_samples`` candidate actions from the base in one batched call
(:func:`~robot_rl.core.candidates.propose`); optionally keep the ``top_k`` by the critic and move
them ``local_steps`` gradient-ascent steps uphill (PA-RL's ActOpt); optionally add a bounded
``edit_scale``-scaled edit of the first ``num_edits`` of them (EXPO's edit policy); execute the
candidate with the highest critic value under ``reduction``. No queue: every control step re-plans,
so the base must see a single observation (``obs_horizon = 1``); of each sampled chunk only the first
action is used.

The bundle holds the base's config and weights under ``base.*``, the critic under ``critic.*``, the
edit head under ``edit.*`` and the critic's state normalizer under ``normalizer.*``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from robot_rl.core import candidates as cand
from robot_rl.core.actor_heads import TanhGaussianHead
from robot_rl.core.critics import CriticEnsemble, Reduction
from robot_rl.core.networks import StateNormalizer
from robot_rl.core.types import STATE_KEY, ActionSpec, ObsSpec
from robot_rl.core.validation import check, check_positive
from robot_rl.policies import POLICIES
from robot_rl.policies.base import PolicyConfig


@dataclass(frozen=True)
class RerankPolicyConfig(PolicyConfig):
    name: str = "rerank"
    base_policy: str = "diffusion"  # registry name of the base
    base_config: dict[str, Any] = field(default_factory=dict)  # the base's policy config
    num_samples: int = 8  # N base samples per control step
    top_k: int = 0  # keep the best k before local optimization (0: keep all N)
    local_steps: int = 0  # PA-RL gradient-ascent steps on the kept candidates (0: off)
    local_step_size: float = 3e-4  # η of those steps
    num_edits: int = 0  # EXPO: edit the first n_edit candidates (0: no edit head)
    edit_scale: float = 0.1  # β, bound of an edit (normalized action units)
    edit_hidden_dims: list[int] = field(default_factory=lambda: [256, 256])
    num_critics: int = 5
    critic_hidden_dims: list[int] = field(default_factory=lambda: [256, 256])
    layer_norm: bool = True
    reduction: str = "min_subset:2"  # over critic heads, to score candidates

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_samples", "num_critics", "edit_scale"):
            check_positive(f"policy.{name}", getattr(self, name))
        for name in ("top_k", "local_steps", "num_edits", "local_step_size"):
            check_positive(f"policy.{name}", getattr(self, name), allow_zero=True)
        check(
            self.num_edits <= self.num_samples,
            f"policy.num_edits={self.num_edits} exceeds policy.num_samples={self.num_samples}",
        )
        Reduction.parse(self.reduction)


def check_single_step_base(base_cfg: Any, who: str) -> None:
    """Candidate re-ranking acts on one observation per step: the base must have ``obs_horizon = 1``."""
    from robot_rl.core.errors import ConfigError

    if base_cfg.obs_horizon != 1:
        raise ConfigError(
            f"{who} re-ranks single-step candidates and needs a base with policy.obs_horizon=1 "
            f"(got {base_cfg.obs_horizon}); set policy.obs_horizon=1 policy.chunk_size=1 "
            "policy.execution_horizon=1 (docs/rl.md, EXPO)"
        )


@POLICIES.register("rerank", RerankPolicyConfig)
class RerankPolicy(nn.Module):
    trainable_base = False  # produced by algo=expo, not trained by imitation

    def __init__(self, cfg: RerankPolicyConfig, obs_spec: ObsSpec, action_spec: ActionSpec, base: Any = None):
        """``base``: share an existing base policy module (the training algorithm's) instead of
        building a fresh one from ``cfg.base_config``."""
        super().__init__()
        self.cfg, self.obs_spec, self.action_spec = cfg, obs_spec, action_spec
        if base is None:
            base_cfg = POLICIES.config_cls(cfg.base_policy)(**cfg.base_config)
            base = POLICIES.get(cfg.base_policy)(base_cfg, obs_spec, action_spec)
        check_single_step_base(base.cfg, "policy=rerank")
        self.base = base
        ds, da = obs_spec.state_dim, action_spec.dim
        self.normalizer = StateNormalizer(ds)
        self.critic = CriticEnsemble(ds, da, cfg.num_critics, cfg.critic_hidden_dims, cfg.layer_norm)
        self.edit = TanhGaussianHead(ds + da, da, cfg.edit_hidden_dims, scale=cfg.edit_scale)
        self.reduction = Reduction.parse(cfg.reduction)
        self.generator = torch.Generator().manual_seed(0)  # head subsets and edit noise

    def reset(self) -> None:
        self.base.reset()

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))
        if hasattr(self.base, "seed"):
            self.base.seed(seed)

    @torch.no_grad()
    def choose(
        self, state: torch.Tensor, use_ema: bool = True, critic: CriticEnsemble | None = None
    ) -> torch.Tensor:
        """The selected action ``[B, Da]`` for raw states ``[B, Ds]`` (acting and, with the current
        base weights ``use_ema=False``, a TD target). ``critic`` overrides the scoring critic."""
        cfg, critic = self.cfg, self.critic if critic is None else critic
        feats = self.normalizer(state)
        pool = cand.propose(self.base, state[:, None], cfg.num_samples, use_ema=use_ema)  # [B, N, Da]
        if cfg.top_k and cfg.top_k < pool.shape[1]:
            _, pool = cand.rank(cand.score(critic, feats, pool, Reduction.parse("mean")), pool, cfg.top_k)
        if cfg.local_steps:
            _, pool = cand.local_optimize(critic, feats, pool, cfg.local_steps, cfg.local_step_size, "mean")
        if cfg.num_edits:
            edited, _ = cand.edit(self.edit, feats, pool[:, : cfg.num_edits], generator=self.generator)
            pool = torch.cat([pool, edited], dim=1)
        scores = cand.score(critic, feats, pool, self.reduction, self.generator)
        return cand.select(scores, pool, "argmax")

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        device = self.normalizer.mean.device
        state = torch.as_tensor(obs[STATE_KEY], dtype=torch.float32, device=device)[None]
        return self.choose(state)[0].cpu().numpy()
