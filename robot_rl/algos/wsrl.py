"""``wsrl``: WSRL — "Efficient Online RL Fine-Tuning Need Not Retain Offline Data" (Zhou, Peng, Li,
Levine, Kumar; ICLR 2025; ALGORITHMS.md §4).

Three steps in the one training loop:

1. **offline pre-training** (``algo.offline_updates``, before any env step): SAC with a LayerNorm
   REDQ critic ensemble and the Cal-QL regularizer (:func:`~robot_rl.core.losses.calql_regularizer`:
   logsumexp over uniform and policy actions, the policy actions' Q floored by the Monte-Carlo
   return) on the demonstrations alone — actor, critic and temperature are all pre-trained;
2. **warm-up** (``algo.warmup_env_steps``): the frozen pre-trained policy collects transitions into an
   empty online buffer, no updates (random actions here are the known porting bug, §4(f));
3. **online**: plain SAC (no Cal-QL) with UTD ``algo.utd`` on online data only
   (``algo.prior_fraction = 0``: no offline data retained).

The ablations of §4(g) are config changes: ``algo.warmup_env_steps=0`` (no warm-up: the Q dip) and
``algo.prior_fraction=0.5`` (offline data retained). The actor loss uses the min over **all** heads,
the TD target a min over 2 random heads.

Deviations (CPU budgets; docs/rl.md "WSRL"): K = 5 heads (WSRL 10), batch 64 with UTD 4 (WSRL
4 × 256), 5k offline updates (WSRL 20k-1M), 2k warm-up steps (WSRL 5k), 4 uniform and 2 + 2 policy
actions per state in Cal-QL, rewards 0/1 without WSRL's per-domain scale/bias, and so an initial
temperature of 1e-2 (WSRL 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from robot_rl.algos import ALGOS
from robot_rl.algos.sac import SAC, SACConfig
from robot_rl.core.losses import calql_regularizer
from robot_rl.core.validation import check_positive


@dataclass(frozen=True)
class WSRLConfig(SACConfig):
    name: str = "wsrl"
    num_critics: int = 5  # WSRL 10
    layer_norm: bool = True
    target_reduction: str = "min_subset:2"
    actor_reduction: str = "min"  # §4(c): min over all heads
    utd: int = 4
    batch_size: int = 64  # WSRL 256 per critic update
    actor_lr: float = 1e-4
    temperature_lr: float = 1e-4
    prior_fraction: float = 0.0  # no offline data retained online
    offline_updates: int = 5000  # Cal-QL pre-training on the demos
    warmup_env_steps: int = 2000  # frozen pre-trained policy, no updates
    backup_entropy: bool = False  # WSRL backs up no entropy
    # our rewards are 0/1 (Q ≤ 1); WSRL's transformed rewards put Q at 10-100× that scale, so the
    # temperature starts at HIL-SERL's 1e-2 instead of 1 (with α = 1 the entropy term swamped Q and
    # the offline actor learned nothing: 0 % after 5k offline updates, docs/rl.md "WSRL")
    init_temperature: float = 0.01
    cql_alpha: float = 1.0  # WSRL adroit (binary reward) 1; kitchen/locomotion 5
    cql_random_actions: int = 4
    cql_policy_actions: int = 2  # actor samples at s and at s' (each), scored at s

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("algo.cql_alpha", self.cql_alpha, allow_zero=True)
        check_positive("algo.cql_random_actions", self.cql_random_actions)
        check_positive("algo.cql_policy_actions", self.cql_policy_actions)


@ALGOS.register("wsrl", WSRLConfig)
class WSRL(SAC):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._offline = False

    def offline_update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One pre-training update: SAC + Cal-QL on a batch of offline (demo) data."""
        self._offline = True
        try:
            return self.update(batch, update_actor=True)
        finally:
            self._offline = False

    def warmup_action(self, obs: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
        """The frozen pre-trained policy (stochastic), never random actions (§4(f))."""
        return self.act(obs, deterministic=False)

    def critic_regularizer(
        self, s: torch.Tensor, s2: torch.Tensor, batch: dict[str, torch.Tensor], q: torch.Tensor
    ) -> torch.Tensor | None:
        if not self._offline or self.cfg.cql_alpha == 0:
            return None
        cfg, (b, da) = self.cfg, batch["action"].shape
        with torch.no_grad():
            n = cfg.cql_policy_actions
            states = torch.cat([s, s2]).repeat_interleave(n, dim=0)
            policy, _, _ = self.actor(states)  # [2·B·n, Da]: n samples at s, then n at s'
            policy = torch.cat([policy[: b * n].view(b, n, da), policy[b * n :].view(b, n, da)], dim=1)
            rand = torch.rand((b, cfg.cql_random_actions, da), generator=self.generator).to(q) * 2 - 1
        q_policy = self.critic(s[:, None].expand(-1, 2 * n, -1), policy)
        q_random = self.critic(s[:, None].expand(-1, cfg.cql_random_actions, -1), rand)
        return calql_regularizer(q, q_random, q_policy, batch["mc_return"], cfg.cql_alpha)
