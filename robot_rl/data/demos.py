"""In-memory demonstration episodes and the chunk windows that behaviour cloning trains on.

Shapes: ``T`` steps of an episode, ``Ds`` state dim, ``Da`` action dim, ``To`` observation
history, ``Ta`` action chunk, ``B`` batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from robot_rl.core.errors import DataError


@dataclass
class Episode:
    """One episode: ``states [T, Ds]`` (the observation before each action), ``actions [T, Da]``,
    ``final_state [Ds]`` (the observation after the last action) and how it ended."""

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    success: bool
    task: str = ""
    final_state: np.ndarray | None = None
    terminated: bool = False  # ended by the task (success with terminate_on_success), not the time limit

    def __post_init__(self) -> None:
        if len(self.states) != len(self.actions) or len(self.actions) != len(self.rewards):
            raise DataError(
                f"episode arrays differ in length: states {len(self.states)}, actions {len(self.actions)}, "
                f"rewards {len(self.rewards)}"
            )
        for name in ("states", "actions", "rewards"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise DataError(f"episode field {name!r} contains NaN or inf")


class ChunkDataset:
    """All ``(observation history, action chunk)`` windows of a list of episodes.

    For step ``t`` of an episode the window holds states ``t-To+1 .. t`` (the first state repeated
    before the episode start) and actions ``t .. t+Ta-1`` (the last action repeated after the end,
    masked out of the loss by ``action_mask``), as in Diffusion Policy's sequence sampler.
    """

    def __init__(self, episodes: list[Episode], obs_horizon: int, chunk_size: int):
        if not episodes:
            raise DataError("no episodes to train on (did every demonstration fail?)")
        self.states = np.concatenate([e.states for e in episodes]).astype(np.float32)
        self.actions = np.concatenate([e.actions for e in episodes]).astype(np.float32)
        obs_idx, act_idx, mask = [], [], []
        start = 0
        for ep in episodes:
            length = len(ep.actions)
            t = np.arange(length)
            obs_idx.append(start + np.clip(t[:, None] + np.arange(-obs_horizon + 1, 1), 0, length - 1))
            ahead = t[:, None] + np.arange(chunk_size)
            act_idx.append(start + np.clip(ahead, 0, length - 1))
            mask.append(ahead < length)
            start += length
        self.obs_index = np.concatenate(obs_idx)
        self.action_index = np.concatenate(act_idx)
        self.action_mask = np.concatenate(mask).astype(np.float32)

    def __len__(self) -> int:
        return len(self.obs_index)

    def sample(self, batch_size: int, rng: np.random.Generator, device: torch.device | str = "cpu"):
        """A random batch: ``obs_state [B, To, Ds]``, ``action [B, Ta, Da]``, ``action_mask [B, Ta]``."""
        idx = rng.integers(0, len(self), batch_size)
        return {
            "obs_state": torch.as_tensor(self.states[self.obs_index[idx]], device=device),
            "action": torch.as_tensor(self.actions[self.action_index[idx]], device=device),
            "action_mask": torch.as_tensor(self.action_mask[idx], device=device),
        }

    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            "states": self.states,
            "actions": self.actions,
            "obs_index": self.obs_index,
            "action_index": self.action_index,
            "action_mask": self.action_mask,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray]) -> ChunkDataset:
        obj = cls.__new__(cls)
        for key, value in state.items():
            setattr(obj, key, np.asarray(value))
        return obj
