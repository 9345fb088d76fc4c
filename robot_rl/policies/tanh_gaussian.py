"""``tanh_gaussian``: the deployable form of a SAC/RLPD actor (deterministic mean action).

Not trained by imitation: it is what ``sac``/``rlpd`` export as a bundle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from robot_rl.core.actor_heads import TanhGaussianHead
from robot_rl.core.networks import StateNormalizer
from robot_rl.core.types import STATE_KEY, ActionSpec, ObsSpec
from robot_rl.policies import POLICIES
from robot_rl.policies.base import PolicyConfig


@dataclass(frozen=True)
class TanhGaussianPolicyConfig(PolicyConfig):
    name: str = "tanh_gaussian"
    hidden_dims: list[int] = field(default_factory=lambda: [256, 256])
    layer_norm: bool = False


@POLICIES.register("tanh_gaussian", TanhGaussianPolicyConfig)
class TanhGaussianPolicy(nn.Module):
    trainable_base = False  # exported by RL algorithms, not trained by imitation

    def __init__(self, cfg: TanhGaussianPolicyConfig, obs_spec: ObsSpec, action_spec: ActionSpec):
        super().__init__()
        self.cfg, self.obs_spec, self.action_spec = cfg, obs_spec, action_spec
        self.normalizer = StateNormalizer(obs_spec.state_dim)
        self.actor = TanhGaussianHead(
            obs_spec.state_dim, action_spec.dim, cfg.hidden_dims, layer_norm=cfg.layer_norm
        )

    def reset(self) -> None:
        """Stateless (no chunk queue)."""

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        device = next(self.parameters()).device
        s = self.normalizer(torch.as_tensor(obs[STATE_KEY], dtype=torch.float32, device=device)[None])
        return self.actor(s, deterministic=True)[2][0].cpu().numpy()
