"""``residual``: a frozen base policy plus a bounded per-step residual — the deployable output of
residual RL fine-tuning (``algo=residual``, ResFiT).

``act(obs)`` = ``clip(a_b + α·tanh(f([norm(s), a_b])), -1, 1)`` with ``a_b = base.act(obs)``; the
base keeps its own chunk queue and ``reset()`` resets it. The bundle holds the base's config and
weights under ``base.*`` and the residual actor under ``actor.*``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from robot_rl.core.actor_heads import ResidualHead, compose_action
from robot_rl.core.networks import StateNormalizer
from robot_rl.core.types import STATE_KEY, ActionSpec, ObsSpec
from robot_rl.core.validation import check
from robot_rl.policies import POLICIES
from robot_rl.policies.base import PolicyConfig


@dataclass(frozen=True)
class ResidualPolicyConfig(PolicyConfig):
    name: str = "residual"
    base_policy: str = "bc_chunk"  # registry name of the frozen base
    base_config: dict[str, Any] = field(default_factory=dict)  # the base's policy config
    scale: float = 0.1  # α: bound of the residual, fraction of the [-1, 1] range
    hidden_dims: list[int] = field(default_factory=lambda: [256, 256])
    layer_norm: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.scale > 0, f"residual scale must be > 0, got {self.scale}")


@POLICIES.register("residual", ResidualPolicyConfig)
class ResidualPolicy(nn.Module):
    trainable_base = False  # produced by algo=residual, not trained by imitation

    def __init__(self, cfg: ResidualPolicyConfig, obs_spec: ObsSpec, action_spec: ActionSpec):
        super().__init__()
        self.cfg, self.obs_spec, self.action_spec = cfg, obs_spec, action_spec
        base_cfg = POLICIES.config_cls(cfg.base_policy)(**cfg.base_config)
        self.base = POLICIES.get(cfg.base_policy)(base_cfg, obs_spec, action_spec)
        self.normalizer = StateNormalizer(obs_spec.state_dim)
        self.actor = ResidualHead(
            obs_spec.state_dim + action_spec.dim, action_spec.dim, cfg.hidden_dims, cfg.scale, cfg.layer_norm
        )

    def reset(self) -> None:
        self.base.reset()

    def residual(self, state: torch.Tensor, base_action: torch.Tensor) -> torch.Tensor:
        """``δ [B, Da]`` for raw states ``[B, Ds]`` and base actions ``[B, Da]``."""
        return self.actor(torch.cat([self.normalizer(state), base_action], dim=-1))

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        device = next(self.parameters()).device
        base = torch.as_tensor(np.clip(self.base.act(obs), -1.0, 1.0), dtype=torch.float32, device=device)[
            None
        ]
        s = torch.as_tensor(obs[STATE_KEY], dtype=torch.float32, device=device)[None]
        return compose_action(base, self.residual(s, base))[0].cpu().numpy()
