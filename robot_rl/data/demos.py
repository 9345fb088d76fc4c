"""In-memory demonstration episodes and the chunk windows that behaviour cloning trains on.

Shapes: ``T`` steps of an episode, ``Ds`` state dim, ``Da`` action dim, ``To`` observation
history, ``Ta`` action chunk, ``B`` batch, ``H, W`` camera image size (channels last, RGB uint8).

Pixels: an :class:`Episode` may carry camera images next to its states (``pixels[cam] [T, H, W, 3]``,
``final_pixels[cam] [H, W, 3]``, the same indexing as ``states`` / ``final_state``); the
:class:`ChunkDataset` then returns ``obs_pixels/<cam> [B, To, H, W, 3]`` windows with exactly the
frames of ``obs_state``. Images stay uint8 until the policy's encoder (4× less memory than float).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from robot_rl.core.errors import DataError
from robot_rl.core.types import PIXELS_PREFIX, STATE_KEY
from robot_rl.policies.encoders import pixels_key


@dataclass
class Episode:
    """One episode: ``states [T, Ds]`` (the observation before each action), ``actions [T, Da]``,
    ``final_state [Ds]`` (the observation after the last action) and how it ended.

    ``pixels``: camera -> uint8 ``[T, H, W, 3]``, the images of the observations in ``states``;
    ``final_pixels``: camera -> uint8 ``[H, W, 3]``, those of ``final_state``. Empty for state-only
    episodes.
    """

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    success: bool
    task: str = ""
    final_state: np.ndarray | None = None
    terminated: bool = False  # ended by the task (success with terminate_on_success), not the time limit
    pixels: dict[str, np.ndarray] = field(default_factory=dict)
    final_pixels: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.states) != len(self.actions) or len(self.actions) != len(self.rewards):
            raise DataError(
                f"episode arrays differ in length: states {len(self.states)}, actions {len(self.actions)}, "
                f"rewards {len(self.rewards)}"
            )
        for name in ("states", "actions", "rewards"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise DataError(f"episode field {name!r} contains NaN or inf")
        for cam, images in self.pixels.items():
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
                raise DataError(
                    f"episode pixels[{cam!r}]: expected uint8 [T, H, W, 3], got {images.dtype} {images.shape}"
                )
            if len(images) != len(self.actions):
                raise DataError(
                    f"episode pixels[{cam!r}] has {len(images)} frames for {len(self.actions)} steps"
                )
        if self.final_pixels:
            if set(self.final_pixels) != set(self.pixels):
                raise DataError(
                    f"episode final_pixels cameras {sorted(self.final_pixels)} != pixels cameras "
                    f"{sorted(self.pixels)}"
                )
            for cam, image in self.final_pixels.items():
                if image.dtype != np.uint8 or image.shape != self.pixels[cam].shape[1:]:
                    raise DataError(
                        f"episode final_pixels[{cam!r}]: expected uint8 {self.pixels[cam].shape[1:]}, "
                        f"got {image.dtype} {image.shape}"
                    )

    @property
    def cameras(self) -> list[str]:
        return sorted(self.pixels)

    def observations(self) -> Iterator[dict[str, np.ndarray]]:
        """The ``T + 1`` observations as the environment gave them (``state``, ``pixels/<cam>``):
        the one before every action, then the final one (needs ``final_state``/``final_pixels``)."""
        if self.final_state is None or (self.pixels and not self.final_pixels):
            raise DataError("episode has no final observation")
        for t in range(len(self.actions) + 1):
            last = t == len(self.actions)
            obs = {STATE_KEY: self.final_state if last else self.states[t]}
            for cam in self.cameras:
                obs[PIXELS_PREFIX + cam] = self.final_pixels[cam] if last else self.pixels[cam][t]
            yield obs


class ChunkDataset:
    """All ``(observation history, action chunk)`` windows of a list of episodes.

    For step ``t`` of an episode the window holds states ``t-To+1 .. t`` (the first state repeated
    before the episode start) and actions ``t .. t+Ta-1`` (the last action repeated after the end,
    masked out of the loss by ``action_mask``), as in Diffusion Policy's sequence sampler. Camera
    images use the same observation window (``obs_index``).

    Args:
        cameras: cameras whose images the batches carry (every episode must have them); ``None``:
            those of the first episode; ``()``: states only.
    """

    def __init__(
        self,
        episodes: list[Episode],
        obs_horizon: int,
        chunk_size: int,
        cameras: Sequence[str] | None = None,
    ):
        if not episodes:
            raise DataError("no episodes to train on (did every demonstration fail?)")
        cameras = episodes[0].cameras if cameras is None else sorted(cameras)
        for i, ep in enumerate(episodes):
            missing = sorted(set(cameras) - set(ep.pixels))
            if missing:
                raise DataError(
                    f"demonstration {i} has no images of camera(s) {missing} (it has {ep.cameras})"
                )
        self.states = np.concatenate([e.states for e in episodes]).astype(np.float32)
        self.actions = np.concatenate([e.actions for e in episodes]).astype(np.float32)
        # camera -> uint8 [N, H, W, 3], N = all steps of all episodes (row i goes with states[i])
        self.pixels = {cam: np.concatenate([e.pixels[cam] for e in episodes]) for cam in cameras}
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

    @property
    def cameras(self) -> list[str]:
        return sorted(self.pixels)

    def sample(self, batch_size: int, rng: np.random.Generator, device: torch.device | str = "cpu"):
        """A random batch: ``obs_state [B, To, Ds]``, ``action [B, Ta, Da]``, ``action_mask [B, Ta]``
        and, per camera, ``obs_pixels/<cam>`` uint8 ``[B, To, H, W, 3]`` (the frames of ``obs_state``)."""
        idx = rng.integers(0, len(self), batch_size)
        obs_idx = self.obs_index[idx]  # [B, To]
        batch = {
            "obs_state": torch.as_tensor(self.states[obs_idx], device=device),
            "action": torch.as_tensor(self.actions[self.action_index[idx]], device=device),
            "action_mask": torch.as_tensor(self.action_mask[idx], device=device),
        }
        for cam, images in self.pixels.items():
            batch[pixels_key(cam)] = torch.as_tensor(images[obs_idx], device=device)
        return batch

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every array; images under ``pixels/<cam>``."""
        return {
            "states": self.states,
            "actions": self.actions,
            "obs_index": self.obs_index,
            "action_index": self.action_index,
            "action_mask": self.action_mask,
            **{PIXELS_PREFIX + cam: images for cam, images in self.pixels.items()},
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray]) -> ChunkDataset:
        obj = cls.__new__(cls)
        obj.pixels = {}
        for key, value in state.items():
            if key.startswith(PIXELS_PREFIX):
                obj.pixels[key[len(PIXELS_PREFIX) :]] = np.asarray(value)
            else:
                setattr(obj, key, np.asarray(value))
        return obj


def episode_to_record(episode: Episode, source: str = "scripted_expert", metadata: dict | None = None):
    """An in-memory demonstration as an :class:`~robot_rl.data.episode_store.EpisodeRecord`."""
    from robot_rl.data.episode_store import EpisodeRecord

    if episode.final_state is None or (episode.pixels and not episode.final_pixels):
        raise DataError("episode has no final observation; the episode store keeps T+1 observations")
    T = len(episode.actions)
    terminated = np.zeros(T, bool)
    terminated[-1] = episode.terminated
    truncated = np.zeros(T, bool)
    truncated[-1] = not episode.terminated
    observations = {STATE_KEY: np.concatenate([episode.states, episode.final_state[None]])}
    for cam in episode.cameras:  # [T+1, H, W, 3]: the frames of the states, then the final one
        observations[PIXELS_PREFIX + cam] = np.concatenate(
            [episode.pixels[cam], episode.final_pixels[cam][None]]
        )
    return EpisodeRecord(
        observations=observations,
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


def episode_from_record(record, path: str = "", cameras: Sequence[str] | None = None) -> Episode:
    """The view of a stored episode that imitation and the prior buffer train on: the state and the
    images of ``cameras`` (``None``: every ``pixels/<cam>`` key of the record; ``()``: none)."""
    where = path or "episode"
    if STATE_KEY not in record.observations:
        raise DataError(f"{where}: no 'state' observation (keys: {sorted(record.observations)})")
    if cameras is None:
        cameras = sorted(k[len(PIXELS_PREFIX) :] for k in record.observations if k.startswith(PIXELS_PREFIX))
    pixels = {}
    for cam in cameras:
        if PIXELS_PREFIX + cam not in record.observations:
            raise DataError(
                f"{where}: no {PIXELS_PREFIX + cam!r} observation (keys: {sorted(record.observations)})"
            )
        pixels[cam] = record.observations[PIXELS_PREFIX + cam]  # [T+1, H, W, 3]
    states = record.observations[STATE_KEY]
    return Episode(
        states=states[:-1],
        actions=record.actions,
        rewards=record.rewards,
        success=bool(record.success),
        task=record.task,
        final_state=states[-1],
        terminated=bool(record.terminated[-1]),
        pixels={cam: frames[:-1] for cam, frames in pixels.items()},
        final_pixels={cam: frames[-1] for cam, frames in pixels.items()},
    )


def load_demos(root: str, keep_failures: bool = False, cameras: Sequence[str] | None = None) -> list[Episode]:
    """Episodes of an episode store (successful ones unless ``keep_failures``), loaded one by one,
    with the images of ``cameras`` (see :func:`episode_from_record`). ``root`` may also be a rosbag2
    bag (a folder with ``metadata.yaml`` / ``*.mcap`` / ``*.db3``, or an ``.mcap`` file): it is
    imported in memory with the default rules of ``robot-rl-bag import`` (docs/data.md §5)."""
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.data.rosbag import is_bag

    if is_bag(root):
        from robot_rl.data.rosbag import ImportOptions, load_bag_records

        options = ImportOptions(cameras=None if cameras is None else tuple(cameras))
        records = [r for r in load_bag_records(root, options) if keep_failures or r.success]
        return [episode_from_record(r, f"{root} episode {i}", cameras) for i, r in enumerate(records)]
    store = EpisodeStore(root)
    indices = range(len(store)) if keep_failures else store.filter(success=True)
    return [episode_from_record(store[i], f"{root} episode {i}", cameras) for i in indices]
