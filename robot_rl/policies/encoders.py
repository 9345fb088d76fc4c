"""Observation encoders shared by policies: observation history -> one feature vector ``[B, F]``.

Batch keys (training batches and ``Policy.sample`` inputs):

* ``obs_state``: float ``[B, To, Ds]`` — raw states; the policy normalizes them (its top-level
  ``normalizer`` so bundles store the statistics in ``normalization.safetensors``) before the
  encoder sees them.
* ``obs_pixels/<camera>``: uint8 ``[B, To, H, W, 3]`` — one key per camera named in
  ``ObsSpec.cameras`` (``<camera>`` is the camera name exactly as in the spec, e.g.
  ``obs_pixels/front``). Channels last, RGB, values 0..255.

At run time (``Policy.act``) the environment's observation dict uses ``state`` ``[Ds]`` and
``pixels/<camera>`` ``[H, W, 3]`` (``robot_rl.core.types.PIXELS_PREFIX``); policies stack the
history themselves and map ``pixels/<camera>`` to ``obs_pixels/<camera>``.

Encoders:

* state only: the normalized history flattened to ``[B, To·Ds]`` (no parameters).
* pixels: per camera a small CNN (3×3 convs, the first with stride 2, ReLU) -> spatial softmax
  (expected image coordinates per channel, Levine et al. 2016) -> Linear -> ``image_feature_dim``,
  applied to every frame of the history; in training mode each frame is first randomly shifted by up
  to ``random_shift_pad`` pixels (replicate-pad then random crop, DrQ, Kostrikov et al. 2020). The
  features of all cameras and frames are concatenated with the flattened state.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.core.types import ObsSpec

OBS_STATE_KEY = "obs_state"
OBS_PIXELS_PREFIX = "obs_pixels/"


def pixels_key(camera: str) -> str:
    """Batch key of a camera's image history: ``obs_pixels/<camera>``."""
    return f"{OBS_PIXELS_PREFIX}{camera}"


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ augmentation: replicate-pad by ``pad`` and crop back at a random offset per image.

    Args:
        images: float ``[N, C, H, W]``.
    Returns:
        ``[N, C, H, W]``; image ``i`` is the padded image cropped at ``(dy_i, dx_i) ∈ [0, 2·pad]²``.
    """
    if pad == 0:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator).to(images.device)
    rows = offsets[:, 0:1] + torch.arange(h, device=images.device)  # [N, H]
    cols = offsets[:, 1:2] + torch.arange(w, device=images.device)  # [N, W]
    idx = torch.arange(n, device=images.device)[:, None, None]
    # advanced indexing puts the indexed dims first: [N, H, W, C]
    return padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


class SpatialSoftmax(nn.Module):
    """``[N, C, h, w]`` -> ``[N, 2C]``: per channel the softmax-weighted mean image coordinate in [-1, 1]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        attn = x.flatten(2).softmax(-1)  # [N, C, h·w]
        ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        coords = torch.stack([grid_x.flatten(), grid_y.flatten()], dim=-1)  # [h·w, 2]
        return (attn @ coords).view(n, 2 * c)


class ImageEncoder(nn.Module):
    """A small CNN for one camera: uint8 ``[N, H, W, 3]`` -> ``[N, feature_dim]``."""

    def __init__(self, channels: Sequence[int], feature_dim: int, random_shift_pad: int):
        super().__init__()
        self.random_shift_pad = random_shift_pad
        layers: list[nn.Module] = []
        cin = 3
        for i, cout in enumerate(channels):
            layers += [nn.Conv2d(cin, cout, 3, stride=2 if i == 0 else 1, padding=1), nn.ReLU()]
            cin = cout
        self.conv = nn.Sequential(*layers)
        self.pool = SpatialSoftmax()
        self.proj = nn.Sequential(nn.Linear(2 * cin, feature_dim), nn.LayerNorm(feature_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float() / 255.0 - 0.5  # [N, 3, H, W] in [-0.5, 0.5]
        if self.training:
            x = random_shift(x, self.random_shift_pad)
        return self.proj(self.pool(self.conv(x)))


class ObsEncoder(nn.Module):
    """Normalized state history (+ camera histories) -> ``[B, out_dim]``.

    ``out_dim = To·Ds + To·len(cameras)·image_feature_dim``.
    """

    def __init__(
        self,
        obs_spec: ObsSpec,
        obs_horizon: int,
        cnn_channels: Sequence[int] = (32, 32, 32),
        image_feature_dim: int = 64,
        random_shift_pad: int = 4,
    ):
        super().__init__()
        self.cameras = sorted(obs_spec.cameras)
        self.images = nn.ModuleDict(
            {cam: ImageEncoder(cnn_channels, image_feature_dim, random_shift_pad) for cam in self.cameras}
        )
        self.out_dim = obs_horizon * (obs_spec.state_dim + len(self.cameras) * image_feature_dim)

    def forward(self, state: torch.Tensor, pixels: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``state [B, To, Ds]`` (normalized), ``pixels``: camera -> uint8 ``[B, To, H, W, 3]``."""
        feats = [state.flatten(1)]
        for cam in self.cameras:
            if pixels is None or cam not in pixels:
                raise KeyError(f"observation batch is missing camera {cam!r} (key {pixels_key(cam)!r})")
            img = pixels[cam]
            feats.append(self.images[cam](img.flatten(0, 1)).view(img.shape[0], -1))  # [B, To·F]
        return torch.cat(feats, dim=-1)


def batch_pixels(batch: dict[str, torch.Tensor], cameras: Sequence[str]) -> dict[str, torch.Tensor]:
    """The ``obs_pixels/<camera>`` entries of a batch, keyed by camera name."""
    return {cam: batch[pixels_key(cam)] for cam in cameras if pixels_key(cam) in batch}
