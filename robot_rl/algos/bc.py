"""``bc``: train a base policy by its own imitation loss (``policy.bc_loss``) on demonstrations.

It is the first stage of every fine-tuning run (the base that RL refines) and the simplest
``Algorithm``: one optimizer, one loss, no environment interaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robot_rl.algos import ALGOS
from robot_rl.config import check_positive
from robot_rl.core.algorithm import AlgoConfig, check_finite_loss
from robot_rl.deploy.bundle import save_bundle


@dataclass(frozen=True)
class BCConfig(AlgoConfig):
    name: str = "bc"
    lr: float = 1e-3
    batch_size: int = 256
    weight_decay: float = 1e-6
    grad_clip: float = 10.0  # max global gradient norm

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("algo.weight_decay", self.weight_decay, allow_zero=True)
        check_positive("algo.grad_clip", self.grad_clip)


@ALGOS.register("bc", BCConfig)
class BC:
    online = False  # learns from demonstrations only

    def __init__(self, cfg: BCConfig, policy: torch.nn.Module):
        self.cfg = cfg
        self.policy = policy
        self.optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.updates = 0

    def act(self, obs: dict[str, np.ndarray], deterministic: bool = True) -> np.ndarray:
        return self.policy.act(obs)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        loss = self.policy.bc_loss(batch)
        check_finite_loss(loss, self.updates, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.policy.after_optimizer_step()  # e.g. EMA weights of a diffusion policy
        self.updates += 1
        return {"loss/bc": loss.item(), "train/grad_norm": grad_norm.item()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # load_state_dict copies into the existing tensors: parameter identity is kept.
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])

    def export_bundle(self, path: str | Path, **metadata: Any) -> Path:
        return save_bundle(path, self.policy, **metadata)
