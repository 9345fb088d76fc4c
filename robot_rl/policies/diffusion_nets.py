"""Noise-prediction networks ``ε_θ(x_t, t, c)`` for the ``diffusion`` policy.

Both denoisers share one call signature::

    eps = denoiser(x_t [B, Ta, Da], t [B] (int or float diffusion step), cond [B, Dc]) -> [B, Ta, Da]

* :class:`ConditionalUnet1D` — the Diffusion Policy (Chi et al., 2023) style temporal U-Net: 1-D
  convolutions along the chunk axis ``Ta`` with ``Da`` as channels, residual blocks of
  ``Conv1d -> GroupNorm -> Mish``, and FiLM (per-channel scale and bias) from the observation
  features concatenated with a sinusoidal timestep embedding.
* :class:`MLPResNetDenoiser` — the single-vector form EXPO and PA-RL use (IDQL-style): the chunk is
  flattened to ``Ta·Da``, concatenated with the conditioning and the timestep embedding, and
  passed through pre-LayerNorm residual MLP blocks.

Fast sampling (``condition``). Within one reverse chain the conditioning ``c`` is fixed and the
steps ``τ_1 … τ_S`` are known in advance, so each denoiser offers
``condition(t [S], c [B, Dc]) -> list of S per-step conditionings`` (the time MLP runs once on all
``S`` steps) and ``forward(x_t, t, c, step_cond=that[s])`` skips the work that does not depend on
``x_t``. The MLP-ResNet then runs :func:`mlp_resnet_step`, its forward as one loop over plain tensors
(no sub-module calls). The result equals ``forward(x_t, t, c)`` up to float rounding (tested).

Written for this project from the papers' descriptions (no code copied).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer-style sinusoidal features of the diffusion step: ``t [B] -> [B, dim]``.

    ``emb_i = sin(t · ω_i) ‖ cos(t · ω_i)`` with ``ω_i = 10000^(-i / (dim/2 - 1))``.
    """

    def __init__(self, dim: int):
        super().__init__()
        if dim % 2 or dim < 4:
            raise ValueError(f"time embedding dim must be even and >= 4, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / (half - 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = t.float()[:, None] * self.freqs[None]
        return torch.cat([arg.sin(), arg.cos()], dim=-1)


def time_mlp(dim: int, act: type[nn.Module]) -> nn.Sequential:
    """Sinusoidal features followed by a two-layer MLP (``[B] -> [B, dim]``)."""
    return nn.Sequential(
        SinusoidalTimeEmbedding(dim), nn.Linear(dim, 4 * dim), act(), nn.Linear(4 * dim, dim)
    )


# --- 1-D temporal U-Net ---


class Conv1d(nn.Conv1d):
    """``nn.Conv1d`` (same parameters and state-dict keys) computed as im2col + one matrix product.

    On CPU builds without oneDNN, PyTorch's fallback ("slow_conv2d") costs about 3x more than this for
    the short chunks here (``Ta`` = 4–16); it is the dominant cost of a U-Net call at batch 1.
    Supports zero padding, any stride, ``groups = dilation = 1`` (all this module uses).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (k,), (s,), (p,) = self.kernel_size, self.stride, self.padding
        cols = F.pad(x, (p, p)).unfold(2, k, s) if (k > 1 or p > 0) else x[..., None]  # [B, C, L', k]
        cols = cols.transpose(1, 2).flatten(2)  # [B, L', C·k] (channel-major, then tap: weight layout)
        b, length = cols.shape[:2]
        w = self.weight.flatten(1).t()  # [C·k, O]
        out = (
            cols.reshape(b * length, -1) @ w
            if self.bias is None
            else torch.addmm(self.bias, cols.flatten(0, 1), w)
        )
        return out.view(b, length, -1).transpose(1, 2)


class Conv1dBlock(nn.Module):
    """``Conv1d (same length) -> GroupNorm -> Mish`` on ``[B, C, Ta]``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.block = nn.Sequential(
            Conv1d(in_ch, out_ch, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, out_ch),
            nn.Mish(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class FiLMResBlock1D(nn.Module):
    """Two conv blocks with FiLM in between and a (1×1-projected) residual connection.

    ``h = Conv(x); h = γ(c) ⊙ h + β(c); out = Conv(h) + skip(x)`` with ``[γ, β] = Linear(Mish(c))``.
    """

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.conv1 = Conv1dBlock(in_ch, out_ch, kernel_size, n_groups)
        self.conv2 = Conv1dBlock(out_ch, out_ch, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_ch))
        self.skip = Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``x [B, C_in, L]``, ``cond [B, Dc]`` -> ``[B, C_out, L]``."""
        h = self.conv1(x)
        scale, bias = self.film(cond)[:, :, None].chunk(2, dim=1)
        h = scale * h + bias
        return self.conv2(h) + self.skip(x)


class ConditionalUnet1D(nn.Module):
    """FiLM-conditioned U-Net over the action chunk.

    Levels ``down_dims = (C_1, ..., C_L)``: each level has two residual blocks, every level but the
    last halves the length (strided conv); the decoder mirrors it with skip connections and
    transposed convs. ``Ta`` must be divisible by ``2^(L-1)``.

    Args:
        action_dim: ``Da`` (input/output channels).
        cond_dim: ``Dc`` observation feature size (the timestep embedding is added internally).
    """

    def __init__(
        self,
        action_dim: int,
        cond_dim: int,
        down_dims: Sequence[int] = (64, 128),
        kernel_size: int = 5,
        n_groups: int = 8,
        time_embed_dim: int = 64,
    ):
        super().__init__()
        self.time_emb = time_mlp(time_embed_dim, nn.Mish)
        film_dim = cond_dim + time_embed_dim
        dims = [action_dim, *down_dims]
        self.down = nn.ModuleList()
        for i, (cin, cout) in enumerate(itertools.pairwise(dims)):
            last = i == len(down_dims) - 1
            self.down.append(
                nn.ModuleList(
                    [
                        FiLMResBlock1D(cin, cout, film_dim, kernel_size, n_groups),
                        FiLMResBlock1D(cout, cout, film_dim, kernel_size, n_groups),
                        Conv1d(cout, cout, 3, stride=2, padding=1) if not last else nn.Identity(),
                    ]
                )
            )
        mid = down_dims[-1]
        self.mid = nn.ModuleList(
            [
                FiLMResBlock1D(mid, mid, film_dim, kernel_size, n_groups),
                FiLMResBlock1D(mid, mid, film_dim, kernel_size, n_groups),
            ]
        )
        self.up = nn.ModuleList()
        rev = list(down_dims[::-1])
        for cout, cin in itertools.pairwise(rev):  # e.g. (128 -> 64)
            self.up.append(
                nn.ModuleList(
                    [
                        FiLMResBlock1D(2 * cout, cin, film_dim, kernel_size, n_groups),
                        FiLMResBlock1D(cin, cin, film_dim, kernel_size, n_groups),
                        nn.ConvTranspose1d(cin, cin, 4, stride=2, padding=1),
                    ]
                )
            )
        self.final = nn.Sequential(
            Conv1dBlock(down_dims[0], down_dims[0], kernel_size, n_groups),
            Conv1d(down_dims[0], action_dim, 1),
        )

    def condition(self, t: torch.Tensor, cond: torch.Tensor) -> list[torch.Tensor]:
        """Per-step FiLM inputs ``[emb(t_s) ‖ c]`` (``[B, E + Dc]`` each) for ``t [S]``, ``cond [B, Dc]``."""
        emb = self.time_emb(t)  # [S, E]: one time-MLP call for the whole chain
        return [torch.cat([e.expand(cond.shape[0], -1), cond], dim=-1) for e in emb]

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor,
        step_cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x [B, Ta, Da]``, ``t [B]``, ``cond [B, Dc]`` -> predicted noise ``[B, Ta, Da]``.

        ``step_cond``: this step's entry of ``condition(...)`` (then ``t`` and ``cond`` are not read).
        """
        c = torch.cat([self.time_emb(t), cond], dim=-1) if step_cond is None else step_cond
        h = x.transpose(1, 2)  # [B, Da, Ta]: actions as channels, time along the chunk
        skips = []
        for res1, res2, downsample in self.down:
            h = res2(res1(h, c), c)
            skips.append(h)
            h = downsample(h)
        for res in self.mid:
            h = res(h, c)
        # the deepest skip has the mid resolution; shallower ones match after each upsample
        for res1, res2, upsample in self.up:
            h = res2(res1(torch.cat([h, skips.pop()], dim=1), c), c)
            h = upsample(h)
        return self.final(h).transpose(1, 2)


# --- MLP-ResNet ---


class MLPResBlock(nn.Module):
    """Pre-norm residual block: ``h + W2 · act(W1 · LayerNorm(h))`` (inner width ``4·hidden``)."""

    def __init__(self, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(hidden),
            nn.Linear(hidden, 4 * hidden),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(4 * hidden, hidden),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.net(h)


class MLPWeights(NamedTuple):
    """An :class:`MLPResNetDenoiser`'s tensors for :func:`mlp_resnet_step` (no copies).

    Matrices are transposed views ``[in, out]``; ``blocks`` holds per residual block
    ``(LayerNorm weight, LayerNorm bias, LayerNorm eps, W1ᵀ [H, 4H], b1, W2ᵀ [4H, H], b2)``.
    """

    w_x: torch.Tensor  # [Ta·Da, H]: the x_t columns of the input layer
    blocks: tuple[tuple[Any, ...], ...]
    w_out: torch.Tensor  # [H, Ta·Da]
    b_out: torch.Tensor  # [Ta·Da]


class MLPStepCond(NamedTuple):
    """One reverse step's conditioning of an :class:`MLPResNetDenoiser` (from ``condition``)."""

    cond_part: torch.Tensor  # [B, H]: W_c c + b of the input layer
    time_part: torch.Tensor  # [H]: W_e emb(t_s)
    weights: MLPWeights


def mlp_resnet_step(x_flat: torch.Tensor, step: MLPStepCond) -> torch.Tensor:
    """:meth:`MLPResNetDenoiser.forward` without dropout: ``x_t [B, Ta·Da]`` -> ``ε̂ [B, Ta·Da]``.

    Same operations as the module path, written as one loop over plain tensors: at batch 1 the
    module calls and attribute look-ups otherwise cost a sizeable share of a step.
    """
    w = step.weights
    h = torch.addmm(step.cond_part, x_flat, w.w_x) + step.time_part  # input layer
    for norm_w, norm_b, norm_eps, w1, b1, w2, b2 in w.blocks:  # h + W2 SiLU(W1 LN(h))
        z = F.layer_norm(h, norm_w.shape, norm_w, norm_b, norm_eps)
        h = torch.addmm(b2, F.silu(torch.addmm(b1, z, w1)), w2) + h
    return torch.addmm(w.b_out, F.silu(h), w.w_out)


class MLPResNetDenoiser(nn.Module):
    """Single-vector denoiser (EXPO / PA-RL / IDQL form) over the flattened chunk ``[B, Ta·Da]``.

    ``h = Linear([x_t ‖ c ‖ emb(t)]); h = blocks(h); eps = Linear(SiLU(h))``.
    """

    def __init__(
        self,
        action_dim: int,
        chunk_size: int,
        cond_dim: int,
        hidden: int = 256,
        n_blocks: int = 3,
        time_embed_dim: int = 64,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.chunk_size = chunk_size
        self.action_dim = action_dim
        flat = chunk_size * action_dim
        self.time_emb = time_mlp(time_embed_dim, nn.SiLU)
        self.inp = nn.Linear(flat + cond_dim + time_embed_dim, hidden)
        self.blocks = nn.Sequential(*[MLPResBlock(hidden, dropout) for _ in range(n_blocks)])
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, flat))

    def condition(self, t: torch.Tensor, cond: torch.Tensor) -> list[MLPStepCond]:
        """Per-step conditionings for the steps ``t [S]`` and ``cond [B, Dc]`` of one reverse chain.

        The input layer is affine, ``W [x ‖ c ‖ e] + b = W_x x + (W_c c + b) + W_e e``, and only the
        first term depends on ``x_t``: the other two are computed here once for all ``S`` steps.
        """
        flat, dc = self.chunk_size * self.action_dim, cond.shape[-1]
        w = self.inp.weight
        cond_part = F.linear(cond, w[:, flat : flat + dc], self.inp.bias)  # [B, H]
        time_part = F.linear(self.time_emb(t), w[:, flat + dc :])  # [S, H]
        blocks = tuple(
            (norm.weight, norm.bias, norm.eps, lin1.weight.t(), lin1.bias, lin2.weight.t(), lin2.bias)
            for norm, lin1, _, _, lin2 in (block.net for block in self.blocks)
        )
        out = self.out[1]
        weights = MLPWeights(w[:, :flat].t(), blocks, out.weight.t(), out.bias)
        return [MLPStepCond(cond_part, row, weights) for row in time_part]

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor,
        step_cond: MLPStepCond | None = None,
    ) -> torch.Tensor:
        """``x [B, Ta, Da]``, ``t [B]``, ``cond [B, Dc]`` -> predicted noise ``[B, Ta, Da]``.

        ``step_cond``: this step's entry of ``condition(...)`` (then ``t`` and ``cond`` are not read).
        """
        shape = (-1, self.chunk_size, self.action_dim)
        dropout_on = self.training and any(block.net[3].p > 0 for block in self.blocks)
        if step_cond is not None and not dropout_on:
            return mlp_resnet_step(x.flatten(1), step_cond).view(shape)
        if step_cond is None:
            h = self.inp(torch.cat([x.flatten(1), cond, self.time_emb(t)], dim=-1))
        else:  # dropout active: the step's input layer, then the modules
            h = torch.addmm(step_cond.cond_part, x.flatten(1), step_cond.weights.w_x) + step_cond.time_part
        return self.out(self.blocks(h)).view(shape)
