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


def episode_to_record(episode: Episode, source: str = "scripted_expert", metadata: dict | None = None):
    """An in-memory demonstration as an :class:`~robot_rl.data.episode_store.EpisodeRecord`."""
    from robot_rl.data.episode_store import EpisodeRecord

    if episode.final_state is None:
        raise DataError("episode has no final observation; the episode store keeps T+1 observations")
    T = len(episode.actions)
    terminated = np.zeros(T, bool)
    terminated[-1] = episode.terminated
    truncated = np.zeros(T, bool)
    truncated[-1] = not episode.terminated
    return EpisodeRecord(
        observations={"state": np.concatenate([episode.states, episode.final_state[None]])},
        actions=episode.actions,
        rewards=episode.rewards,
        terminated=terminated,
        truncated=truncated,
        is_demo=np.ones(T, bool),
        reward_source="sim",
        source=source,
        task=episode.task,
        success=episode.success,
        metadata=metadata or {},
    )


def episode_from_record(record, path: str = "") -> Episode:
    """The state-only view of a stored episode that imitation and the prior buffer train on."""
    if "state" not in record.observations:
        raise DataError(f"{path or 'episode'}: no 'state' observation (keys: {sorted(record.observations)})")
    states = record.observations["state"]
    return Episode(
        states=states[:-1],
        actions=record.actions,
        rewards=record.rewards,
        success=bool(record.success),
        task=record.task,
        final_state=states[-1],
        terminated=bool(record.terminated[-1]),
    )


def load_demos(root: str, keep_failures: bool = False) -> list[Episode]:
    """Episodes of an episode store (successful ones unless ``keep_failures``), loaded one by one."""
    from robot_rl.data.episode_store import EpisodeStore

    store = EpisodeStore(root)
    indices = range(len(store)) if keep_failures else store.filter(success=True)
    return [episode_from_record(store[i], f"{root} episode {i}") for i in indices]
