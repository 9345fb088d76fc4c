"""``bc_chunk``: behaviour cloning of action chunks (ACT/Diffusion-Policy-style chunking).

The network maps ``To`` normalized states to ``Ta`` actions in ``[-1, 1]`` (tanh output). Its
backbone is an MLP on the flattened history (``backbone: mlp``, default) or a small ACT-like
transformer encoder without the VAE (``backbone: transformer``); both are built by
:func:`build_chunk_net`, and everything else (queue, ensembling, normalizers, loss) is shared. At run
time ``act`` predicts a chunk, executes its first ``execution_horizon`` actions from a queue, then
re-plans. ``reset`` clears the queue and the observation history (call it at every episode start;
RL wrappers do this per environment).

Shapes: ``B`` batch, ``To`` observation history, ``Ta`` chunk, ``Ds`` state dim, ``Da`` action dim.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from robot_rl.config import check, check_choice, check_positive
from robot_rl.core.networks import ActionNormalizer, StateNormalizer, mlp
from robot_rl.core.types import STATE_KEY, ActionSpec, ObsSpec
from robot_rl.policies import POLICIES
from robot_rl.policies.base import PolicyConfig

BACKBONES = ("mlp", "transformer")


@dataclass(frozen=True)
class BCChunkConfig(PolicyConfig):
    name: str = "bc_chunk"
    obs_horizon: int = 1
    chunk_size: int = 8
    execution_horizon: int = 4
    hidden_dims: list[int] = field(default_factory=lambda: [256, 256])
    # ACT temporal ensembling: > 0 re-plans every step and averages every chunk's prediction for the
    # current step with weights exp(-m·i), i = 0 for the oldest (ACT uses m = 0.01); 0 = off.
    temporal_ensemble_decay: float = 0.0
    backbone: str = "mlp"  # mlp (uses hidden_dims) | transformer (uses the fields below)
    d_model: int = 128  # transformer token width
    n_heads: int = 4
    n_layers: int = 2
    ff_dim: int = 256  # width of each encoder layer's feed-forward block
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.temporal_ensemble_decay >= 0, "policy.temporal_ensemble_decay must be >= 0")
        check(
            len(self.hidden_dims) > 0 and all(h > 0 for h in self.hidden_dims),
            f"policy.hidden_dims must be positive widths, got {self.hidden_dims}",
        )
        check_choice("policy.backbone", self.backbone, BACKBONES)
        for key in ("d_model", "n_heads", "n_layers", "ff_dim"):
            check_positive(f"policy.{key}", getattr(self, key))
        check(
            self.d_model % self.n_heads == 0,
            f"policy.d_model={self.d_model} must be divisible by policy.n_heads={self.n_heads}",
        )
        check(0.0 <= self.dropout < 1.0, f"policy.dropout must be in [0, 1), got {self.dropout}")


# --- math ---


def temporal_ensemble(predictions: list[np.ndarray], decay: float) -> np.ndarray:
    """ACT's weighted average of the predictions for one step, oldest first: ``w_i = exp(-decay·i)``.

    Args:
        predictions: ``[Da]`` actions predicted for the current step by successive chunks (oldest first).
    """
    weights = np.exp(-decay * np.arange(len(predictions)))
    return (weights[:, None] * np.stack(predictions)).sum(0) / weights.sum()


def masked_chunk_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the valid steps of each chunk.

    Args:
        pred, target: ``[B, Ta, Da]``.
        mask: ``[B, Ta]``, 1 for real actions, 0 for padding past the episode end.
    """
    per_step = ((pred - target) ** 2).mean(-1)
    return (per_step * mask).sum() / mask.sum().clamp_min(1.0)


# --- networks: [B, To, Ds] normalized states -> [B, Ta, Da] pre-tanh actions ---


class ChunkMLP(nn.Sequential):
    """An :func:`mlp` on the flattened history ``[B, To·Ds]`` reshaped to ``[B, Ta, Da]``.

    A ``Sequential`` subclass so the parameter names (``net.0.weight``, ...) are those of the plain
    MLP: bundles saved before the transformer option load unchanged.
    """

    def __init__(self, obs_horizon: int, state_dim: int, hidden: list[int], chunk_size: int, action_dim: int):
        super().__init__(*mlp(obs_horizon * state_dim, hidden, chunk_size * action_dim))
        self.chunk_size, self.action_dim = chunk_size, action_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(1)).view(-1, self.chunk_size, self.action_dim)


class ChunkTransformer(nn.Module):
    """ACT-like chunk predictor without the VAE: one pre-norm ``TransformerEncoder`` over
    ``[To observation tokens, Ta learned action queries]``; a linear head reads the query tokens.

    Observation token ``i`` is ``Linear(s_i) + pos_i`` (learned positions); the queries are learned
    vectors (their index is their chunk position). No mask: every token attends to every token.
    """

    def __init__(self, cfg: BCChunkConfig, state_dim: int, action_dim: int):
        super().__init__()
        d = cfg.d_model
        self.obs_proj = nn.Linear(state_dim, d)
        self.obs_pos = nn.Parameter(0.02 * torch.randn(cfg.obs_horizon, d))  # [To, d]
        self.queries = nn.Parameter(0.02 * torch.randn(cfg.chunk_size, d))  # [Ta, d]
        layer = nn.TransformerEncoderLayer(
            d, cfg.n_heads, cfg.ff_dim, cfg.dropout, activation="relu", batch_first=True, norm_first=True
        )
        # pre-norm leaves the residual stream unnormalized: a final LayerNorm before the head;
        # in eval mode under no_grad PyTorch runs these layers through its fused fast path
        self.encoder = nn.TransformerEncoder(
            layer, cfg.n_layers, norm=nn.LayerNorm(d), enable_nested_tensor=False
        )
        self.head = nn.Linear(d, action_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, To, Ds]`` -> ``[B, Ta, Da]``."""
        obs_tokens = self.obs_proj(x) + self.obs_pos  # [B, To, d]
        queries = self.queries.expand(x.shape[0], -1, -1)  # [B, Ta, d]
        h = self.encoder(torch.cat([obs_tokens, queries], dim=1))  # [B, To + Ta, d]
        return self.head(h[:, x.shape[1] :])


def build_chunk_net(cfg: BCChunkConfig, state_dim: int, action_dim: int) -> nn.Module:
    """The backbone chosen by ``cfg.backbone``: ``[B, To, Ds] -> [B, Ta, Da]`` (pre-tanh)."""
    if cfg.backbone == "transformer":
        return ChunkTransformer(cfg, state_dim, action_dim)
    return ChunkMLP(cfg.obs_horizon, state_dim, cfg.hidden_dims, cfg.chunk_size, action_dim)


# --- policy ---


@POLICIES.register("bc_chunk", BCChunkConfig)
class BCChunkPolicy(nn.Module):
    def __init__(self, cfg: BCChunkConfig, obs_spec: ObsSpec, action_spec: ActionSpec):
        super().__init__()
        self.cfg = cfg
        self.obs_spec = obs_spec
        self.action_spec = action_spec
        self.normalizer = StateNormalizer(obs_spec.state_dim)
        self.action_normalizer = ActionNormalizer(action_spec.dim, headroom=cfg.action_headroom)
        self.net = build_chunk_net(cfg, obs_spec.state_dim, action_spec.dim)
        self._history: deque[np.ndarray] = deque(maxlen=cfg.obs_horizon)
        self._queue: deque[np.ndarray] = deque()
        self._chunks: deque[np.ndarray] = deque()  # temporal ensembling: chunks still covering future steps

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def fit_normalizer(self, states: np.ndarray, actions: np.ndarray | None = None) -> None:
        self.normalizer.fit(torch.as_tensor(states, dtype=torch.float32, device=self.device))
        if actions is not None:
            self.action_normalizer.fit(torch.as_tensor(actions, dtype=torch.float32, device=self.device))

    def _normalized_chunk(self, obs_state: torch.Tensor) -> torch.Tensor:
        """``obs_state [B, To, Ds]`` -> ``[B, Ta, Da]`` in the normalized action space ``[-1, 1]``."""
        return torch.tanh(self.net(self.normalizer(obs_state)))

    def predict_chunk(self, obs_state: torch.Tensor) -> torch.Tensor:
        """``obs_state [B, To, Ds]`` -> action chunk ``[B, Ta, Da]`` in env units, clipped to ``[-1, 1]``."""
        return self.action_normalizer.denormalize(self._normalized_chunk(obs_state)).clamp(-1.0, 1.0)

    def reset(self) -> None:
        self._history.clear()
        self._queue.clear()
        self._chunks.clear()

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        state = np.asarray(obs[STATE_KEY], dtype=np.float32)
        if not self._history:  # pad the history with the first observation of the episode
            self._history.extend([state] * self.cfg.obs_horizon)
        else:
            self._history.append(state)
        hist = lambda: torch.as_tensor(np.stack(self._history), device=self.device)[None]  # noqa: E731
        if self.cfg.temporal_ensemble_decay > 0:
            # every step: a new chunk; the k-th newest chunk's entry k predicts the current step
            self._chunks.append(self.predict_chunk(hist())[0].cpu().numpy())
            while len(self._chunks) > self.cfg.chunk_size:
                self._chunks.popleft()
            n = len(self._chunks)
            predictions = [chunk[n - 1 - i] for i, chunk in enumerate(self._chunks)]  # oldest first
            return temporal_ensemble(predictions, self.cfg.temporal_ensemble_decay).astype(np.float32)
        if not self._queue:
            chunk = self.predict_chunk(hist())[0].cpu().numpy()
            self._queue.extend(chunk[: self.cfg.execution_horizon])
        return self._queue.popleft()

    @torch.no_grad()
    def sample(self, obs_batch: dict[str, torch.Tensor], n: int, use_ema: bool = True) -> torch.Tensor:
        """Deterministic policy: the same chunk ``n`` times, ``[B, n, Ta, Da]`` (no EMA: ``use_ema``
        is accepted for the protocol and ignored)."""
        chunk = self.predict_chunk(obs_batch["obs_state"])
        return chunk[:, None].expand(-1, n, -1, -1)

    def after_optimizer_step(self) -> None:
        """No EMA or other post-step state for this policy."""

    def bc_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        target = self.action_normalizer.normalize(batch["action"])  # the loss lives in the normalized space
        return masked_chunk_mse(self._normalized_chunk(batch["obs_state"]), target, batch["action_mask"])
