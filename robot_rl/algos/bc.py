"""``bc``: imitation only — train the base policy by its own loss (``policy.bc_loss``) on demos.

:class:`BC` is also the first stage of every fine-tuning run: the trainer uses it, configured by
``TrainConfig.base`` (:class:`ImitationConfig`), to train the base that RL then refines. With
``algo=bc`` the run stops there (no environment interaction, no fine-tuning).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robot_rl.algos import ALGOS
from robot_rl.config import ImitationConfig
from robot_rl.core.algorithm import AlgoConfig, adam, check_finite_loss, optimizer_step
from robot_rl.deploy.bundle import save_bundle


@dataclass(frozen=True)
class BCConfig(AlgoConfig):
    """``algo=bc``: no fine-tuning; the imitation settings live in ``base.*``."""

    name: str = "bc"


@ALGOS.register("bc", BCConfig)
class BC:
    online = False  # learns from demonstrations only

    def __init__(self, cfg: ImitationConfig, policy: torch.nn.Module):
        self.cfg = cfg
        self.policy = policy
        self.optimizer = adam(policy.parameters(), cfg.lr, cfg.weight_decay, decoupled=True)
        self.updates = 0

    def act(self, obs: dict[str, np.ndarray], deterministic: bool = True) -> np.ndarray:
        return self.policy.act(obs)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        loss = self.policy.bc_loss(batch)
        check_finite_loss(loss, self.updates, batch)
        grad_norm = optimizer_step(self.optimizer, loss, self.policy.parameters(), self.cfg.grad_clip)
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
