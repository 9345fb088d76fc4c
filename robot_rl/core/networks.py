"""Small network building blocks shared by policies and algorithms."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, layer_norm: bool = False) -> nn.Sequential:
    """``Linear -> [LayerNorm] -> ReLU`` per hidden width, then a linear output layer."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers.append(nn.Linear(width, h))
        if layer_norm:
            layers.append(nn.LayerNorm(h))
        layers.append(nn.ReLU())
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class StateNormalizer(nn.Module):
    """``(x - mean) / max(std, floor)`` with statistics stored as buffers (saved in bundles).

    The floor keeps near-constant state dimensions (e.g. a fixed goal) from blowing up.
    """

    def __init__(self, dim: int, std_floor: float = 1e-2):
        super().__init__()
        self.std_floor = std_floor
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, states: torch.Tensor) -> None:
        """Set the statistics from ``states [N, dim]``."""
        self.mean.copy_(states.mean(0))
        self.std.copy_(states.std(0).clamp_min(self.std_floor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ActionNormalizer(nn.Module):
    """Per-dimension affine map of actions to ``[-1, 1]`` from the data's min/max (ALGORITHMS.md §11.10).

    ``normalize(a) = (a - center) / half_range``. The range is floored at ``range_floor`` (a dimension
    the demos barely use is not blown up) and widened by ``1 + headroom`` so the policy's outputs
    span only ``[-1/(1+h), 1/(1+h)]`` of its range, leaving room for a residual correction (ResFiT
    uses ``h = α``). Statistics are buffers, saved in bundles; unfitted it is the identity.
    """

    def __init__(self, dim: int, headroom: float = 0.0, range_floor: float = 0.1):
        super().__init__()
        self.headroom, self.range_floor = headroom, range_floor
        self.register_buffer("center", torch.zeros(dim))
        self.register_buffer("half_range", torch.ones(dim))

    @torch.no_grad()
    def fit(self, actions: torch.Tensor) -> None:
        """Set the statistics from ``actions [N, Da]``."""
        low, high = actions.min(0).values, actions.max(0).values
        self.center.copy_((low + high) / 2)
        self.half_range.copy_(((high - low) / 2).clamp_min(self.range_floor / 2) * (1 + self.headroom))

    def normalize(self, action: torch.Tensor) -> torch.Tensor:
        return (action - self.center) / self.half_range

    def denormalize(self, action: torch.Tensor) -> torch.Tensor:
        return action * self.half_range + self.center
