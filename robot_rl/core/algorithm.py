"""The ``Algorithm`` protocol every file in ``robot_rl/algos`` implements, and its config base."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from robot_rl.core.errors import TrainingDivergedError
from robot_rl.core.validation import check, check_positive


@dataclass(frozen=True)
class AlgoConfig:
    """Base of every algorithm config; each algorithm adds its own (validated) fields."""

    name: str = ""


@runtime_checkable
class Algorithm(Protocol):
    """What the training loop calls. Online algorithms (``online = True``) also provide
    ``wrap_env(env, base_policy)`` (classmethod), ``warmup_action(obs, rng)``,
    ``fit_normalizer(states)``, and ``update(batch, update_actor)``."""

    def act(self, obs: dict[str, np.ndarray], deterministic: bool = False) -> np.ndarray: ...

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def export_bundle(self, path: str | Path, **metadata: Any) -> Path: ...


def check_finite_loss(loss: torch.Tensor, step: int, batch: dict[str, torch.Tensor]) -> None:
    """Stop on a NaN/inf loss, naming the step and summarising the batch (never continue silently)."""
    if torch.isfinite(loss).all():
        return
    stats = ", ".join(
        f"{k}: min {v.min().item():.3g} max {v.max().item():.3g} nan {int(torch.isnan(v).sum())}"
        for k, v in batch.items()
        if v.is_floating_point() and v.numel()
    )
    raise TrainingDivergedError(f"non-finite loss {loss.item()} at update {step}; batch {stats}")


@dataclass(frozen=True)
class OnlineAlgoConfig(AlgoConfig):
    """Fields every off-policy online algorithm shares (the training loop reads them)."""

    gamma: float = 0.99
    n_step: int = 1  # n of the n-step return
    utd: int = 1  # critic updates per env step (update-to-data ratio)
    batch_size: int = 256
    prior_fraction: float = 0.0  # share of each batch drawn from the prior (demo) buffer
    buffer_capacity: int = 200_000  # online replay capacity (steps)
    warmup_env_steps: int = 5000  # env steps with `warmup_action` before any update
    critic_warmup_updates: int = 0  # critic-only updates right after the env warm-up
    offline_updates: int = 0  # updates on the prior (demo) buffer alone before any env step (WSRL)
    tau: float = 0.005  # Polyak rate of the target networks
    grad_clip: float = 1.0  # max global gradient norm

    def __post_init__(self) -> None:
        check(0.0 < self.gamma <= 1.0, f"algo.gamma must be in (0, 1], got {self.gamma}")
        for name in ("n_step", "utd", "batch_size", "buffer_capacity"):
            check_positive(f"algo.{name}", getattr(self, name))
        for name in ("warmup_env_steps", "critic_warmup_updates", "offline_updates"):
            check_positive(f"algo.{name}", getattr(self, name), allow_zero=True)
        check(
            0.0 <= self.prior_fraction <= 1.0,
            f"algo.prior_fraction must be in [0, 1], got {self.prior_fraction}",
        )
        check(0.0 < self.tau <= 1.0, f"algo.tau must be in (0, 1], got {self.tau}")
        check_positive("algo.grad_clip", self.grad_clip)


@torch.no_grad()
def critic_metrics(
    q: torch.Tensor, target: torch.Tensor, is_demo: torch.Tensor, loss: torch.Tensor
) -> dict[str, Any]:
    """The critic diagnostics every algorithm logs: ``q [K, B]`` (per head), ``target [B]``,
    ``is_demo [B]`` bool. ``train/q_prior`` / ``train/q_online``: mean Q on the demo / online rows
    (NaN when the batch has none)."""
    q_mean = q.mean(0)
    nan = torch.tensor(float("nan"))
    return {
        "loss/critic": loss,
        "train/q_mean": q_mean.mean(),
        "train/td_error": (q_mean - target).abs().mean(),
        "train/q_prior": q_mean[is_demo].mean() if is_demo.any() else nan,
        "train/q_online": q_mean[~is_demo].mean() if (~is_demo).any() else nan,
    }


def metrics_to_floats(metrics: dict[str, Any]) -> dict[str, float]:
    """Detach and convert metric tensors to Python floats (one sync point per update)."""
    return {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in metrics.items()}


class StatefulModules(abc.ABC):
    """``state_dict``/``load_state_dict`` for an algorithm made of named modules and optimizers.

    Subclasses list their parts in ``_modules()`` and keep ``self.updates`` (int) and
    ``self.generator`` (a ``torch.Generator``); loading copies into the existing tensors, so
    parameter identity (and optimizer references) survive a restore.
    """

    updates: int
    generator: torch.Generator

    @abc.abstractmethod
    def _modules(self) -> dict[str, Any]:
        """Name -> module or optimizer (anything with ``state_dict``/``load_state_dict``)."""

    def state_dict(self) -> dict[str, Any]:
        return {
            **{key: part.state_dict() for key, part in self._modules().items()},
            "updates": self.updates,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, part in self._modules().items():
            part.load_state_dict(state[key])
        self.updates = int(state["updates"])
        self.generator.set_state(state["generator"])

    # the parts an actor process needs to act (``act``); the learner publishes only these
    ACTING_PARTS: tuple[str, ...] = ("normalizer", "actor")

    def acting_state_dict(self) -> dict[str, Any]:
        modules = self._modules()
        return {key: modules[key].state_dict() for key in self.ACTING_PARTS}

    def load_acting_state_dict(self, state: dict[str, Any]) -> None:
        modules = self._modules()
        for key in self.ACTING_PARTS:
            modules[key].load_state_dict(state[key])


def adam(params: Any, lr: float, weight_decay: float = 0.0, decoupled: bool = False) -> torch.optim.Optimizer:
    """Adam (``decoupled=False``, L2 in the gradient) or AdamW (``decoupled=True``) with the fused
    single-kernel step (CPU and CUDA, torch >= 2.4): same math as the default multi-tensor step,
    ~10 % more learner updates/s on 2 CPU threads (docs/benchmarks.md, learner speed)."""
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    return cls(params, lr=lr, weight_decay=weight_decay, fused=True)


@contextlib.contextmanager
def frozen(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Temporarily stop gradients *into* ``module``'s parameters, while gradients still flow *through*
    it to its inputs — the actor loss backpropagates through the critic to the action but must not
    spend time (or memory) on critic weight gradients it would throw away."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def optimizer_step(
    optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: Any, grad_clip: float | None = None
) -> torch.Tensor | None:
    """``zero_grad -> backward -> clip the global grad norm (if grad_clip) -> step``; returns the
    pre-clip gradient norm when clipping, else None."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip) if grad_clip else None
    optimizer.step()
    return norm


def base_imitation_step(
    base: Any,
    optimizer: torch.optim.Optimizer,
    states: torch.Tensor,
    actions: torch.Tensor,
    grad_clip: float | None,
    step: int,
) -> torch.Tensor:
    """One supervised step of a base policy's own loss (``base.bc_loss``) on single-step pairs
    ``states [B, Ds]`` → ``actions [B, Da]`` (EXPO's online imitation, PA-RL's distillation).

    The base sees a one-frame history; with ``chunk_size > 1`` the target chunk holds the action at
    index 0 and the rest is masked out of the loss. Runs the base's ``after_optimizer_step`` (EMA).
    """
    b, ta = states.shape[0], base.cfg.chunk_size
    chunk = torch.zeros(b, ta, actions.shape[-1], device=actions.device, dtype=actions.dtype)
    chunk[:, 0] = actions
    mask = torch.zeros(b, ta, device=actions.device, dtype=actions.dtype)
    mask[:, 0] = 1.0
    loss = base.bc_loss({"obs_state": states[:, None], "action": chunk, "action_mask": mask})
    check_finite_loss(loss, step, {"obs_state": states, "action": actions})
    optimizer_step(optimizer, loss, base.parameters(), grad_clip)
    base.after_optimizer_step()
    return loss.detach()
