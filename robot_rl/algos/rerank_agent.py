"""What EXPO and PA-RL share: an acting :class:`~robot_rl.policies.rerank.RerankPolicy` around a base
that the algorithm keeps training online (not a registered algorithm itself)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from robot_rl.core import candidates as cand
from robot_rl.core.algorithm import StatefulModules
from robot_rl.core.types import STATE_KEY, ActionSpec, ObsSpec
from robot_rl.core.validation import check
from robot_rl.policies.rerank import RerankPolicy, RerankPolicyConfig, check_single_step_base


class RerankAgent(StatefulModules):
    """Subclasses call :meth:`_build_agent` first (it sets ``self.agent``, a RerankPolicy sharing
    ``self.base``, and the specs) and list their parts in ``_modules``."""

    online = True
    trains_base = True  # the trainer leaves the base trainable in the online phase
    agent: RerankPolicy
    base: Any
    device: torch.device

    def _build_agent(
        self,
        cfg: Any,
        obs_spec: ObsSpec,
        action_spec: ActionSpec,
        base_policy: Any,
        device: torch.device | str,
        who: str,
        **agent_fields: Any,
    ) -> None:
        """Check the base, keep the specs and build ``self.agent`` around the shared base: candidate
        count, critic size and LayerNorm come from the algorithm config ``cfg``, the rest from
        ``agent_fields`` (RerankPolicyConfig fields). ``self.generator`` is the agent's (seeded 0)."""
        check(base_policy is not None, f"{who} needs a base policy (trained from demos or base.bundle=...)")
        check(hasattr(base_policy, "sample"), f"{who} needs a base with sample(); got {base_policy.cfg.name}")
        check_single_step_base(base_policy.cfg, who)
        self.cfg, self.obs_spec, self.action_spec = cfg, obs_spec, action_spec
        self.device = torch.device(device)
        self.base = base_policy
        agent_cfg = RerankPolicyConfig(
            base_policy=base_policy.cfg.name,
            base_config=dataclasses.asdict(base_policy.cfg),
            num_samples=cfg.num_samples,
            num_critics=cfg.num_critics,
            critic_hidden_dims=list(cfg.hidden_dims),
            layer_norm=cfg.layer_norm,
            **agent_fields,
        )
        self.agent = RerankPolicy(agent_cfg, obs_spec, action_spec, base=base_policy).to(self.device)
        self.generator = self.agent.generator
        self.generator.manual_seed(0)

    @classmethod
    def wrap_env(cls, env: gym.Env, base_policy: Any = None) -> gym.Env:
        return env  # the base is part of the agent, not of the environment

    def fit_normalizer(self, states: np.ndarray) -> None:
        self.agent.normalizer.fit(torch.as_tensor(states, dtype=torch.float32, device=self.device))

    def _state(self, obs: dict[str, np.ndarray]) -> torch.Tensor:
        return torch.as_tensor(obs[STATE_KEY], dtype=torch.float32, device=self.device)[None]

    @torch.no_grad()
    def warmup_action(self, obs: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
        """One plain sample of the (EMA) base: the pre-trained policy collects the warm-up data."""
        return cand.propose(self.base, self._state(obs)[:, None], 1)[0, 0].cpu().numpy()

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray], deterministic: bool = False) -> np.ndarray:
        """The agent's choice among base samples. EXPO and PA-RL evaluate with the same policy they act
        with (its randomness is the base's sampling), so ``deterministic`` changes nothing."""
        return self.agent.choose(self._state(obs))[0].cpu().numpy()

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if hasattr(self.base, "generator"):  # the base's sampling noise, for an exact resume
            state["base_generator"] = self.base.generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "base_generator" in state:
            self.base.generator.set_state(state["base_generator"])

    def refined_policy(self) -> RerankPolicy:
        """A standalone copy of the acting policy (base, scoring critic, edit head, normalizer)."""
        policy = RerankPolicy(self.agent.cfg, self.obs_spec, self.action_spec)
        policy.load_state_dict({k: v.detach().cpu() for k, v in self.agent.state_dict().items()})
        return policy.eval()

    def export_bundle(self, path: str | Path, **metadata: Any) -> Path:
        from robot_rl.deploy.bundle import save_bundle

        return save_bundle(path, self.refined_policy(), **metadata)
