"""Ring replay buffer with n-step and MC returns, and a prior/online mixer (ALGORITHMS.md §11.3-11.4).

Storage is one numpy ring array per field (no Python lists of transitions). Each slot holds one raw
control step ``(s, a, r, s', terminated, truncated, flags)`` plus its precomputed n-step view:

- ``reward`` (sampled): ``R_t = Σ_{i<m} γ^i r_{t+i}`` with ``m = min(n, steps left in the episode)``;
- ``discount`` (sampled): ``γ^m·(1 - terminated)`` — a time-limit truncation still bootstraps from the
  last stored ``next_obs``, a true termination does not (§1(c), :func:`robot_rl.core.losses.n_step_returns`);
- ``next_obs`` (sampled): the ``next_obs`` of step ``t+m-1``, i.e. ``s_{t+m}`` (stored per step; the
  bootstrap state is looked up by index, so ring wrap-around never mixes episodes);
- ``mc_return``: Monte-Carlo return-to-go ``G_t = Σ_{i≥t} γ^{i-t} r_i`` (no bootstrap), written when the
  episode closes; ``NaN`` for steps of an episode that is still open (Cal-QL/WSRL, §11.3).

**When a step becomes sampleable.** Steps are added one at a time, in episode order, for a single env.
With ``sample_open_episodes=True`` (default, ResFiT-style) step ``t`` becomes sampleable as soon as
step ``t+n-1`` has been added (its full n-step return is known), and the last ``< n`` steps of an
episode when it ends. With ``False``, steps become sampleable only when their episode closes, so
``mc_return`` is always finite in a batch (use this for Cal-QL on online data).

An episode closes on ``terminated or truncated``, or on :meth:`ReplayBuffer.end_episode` (treated as a
truncation, e.g. a manual reset). Memory: ``obs`` and ``next_obs`` are stored separately (2x the
observation bytes); the capacity should exceed the longest episode.

Sampled batch (``dict[str, torch.Tensor]``, ``B`` rows): ``obs/<key>`` and ``next_obs/<key>``
(stored dtype, e.g. float32 / uint8), ``action [B, Da]`` float32, ``reward [B]`` float32 (n-step
return), ``discount [B]`` float32 (already masked), ``is_demo [B]`` / ``is_intervention [B]`` bool,
``mc_return [B]`` float32. A frozen base's action is just an observation key (``obs/base_action``,
``next_obs/base_action``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from robot_rl.core.errors import ConfigError
from robot_rl.core.losses import mc_returns, n_step_returns

_IMAGE_PREFIXES = ("pixels/", "images/")
Batch = dict[str, torch.Tensor]


def _default_dtype(key: str) -> np.dtype:
    return np.dtype(np.uint8) if key.startswith(_IMAGE_PREFIXES) else np.dtype(np.float32)


def split_minibatches(batch: Batch, num: int) -> list[Batch]:
    """Split a batch of ``num·B`` rows into ``num`` minibatches of ``B`` rows (views, no copy)."""
    return [dict(zip(batch, parts)) for parts in zip(*(v.chunk(num, dim=0) for v in batch.values()))]


class ReplayBuffer:
    """Ring buffer of single-env transitions with n-step and Monte-Carlo returns.

    Args:
        capacity: number of steps kept (oldest overwritten first); must be ``≥ n_step``.
        obs_shapes: per observation key, the shape of one observation (e.g. ``{"state": (11,)}``).
        obs_dtypes: per key dtype; default uint8 for ``pixels/*`` and ``images/*``, else float32.
        action_dim: ``Da`` (the *executed* action is stored).
        n_step: n of the n-step return (ResFiT 3); gamma: γ.
        sample_open_episodes: see the module docstring.
    """

    def __init__(
        self,
        capacity: int,
        obs_shapes: dict[str, tuple[int, ...]],
        obs_dtypes: dict[str, np.dtype] | None = None,
        action_dim: int = 1,
        n_step: int = 1,
        gamma: float = 0.99,
        sample_open_episodes: bool = True,
    ):
        if n_step < 1 or capacity < n_step:
            raise ConfigError(f"ReplayBuffer: need 1 <= n_step <= capacity, got n={n_step}, cap={capacity}")
        if not obs_shapes:
            raise ConfigError("ReplayBuffer: obs_shapes must name at least one observation key")
        self.capacity, self.n_step, self.gamma = int(capacity), int(n_step), float(gamma)
        self.action_dim, self.sample_open_episodes = int(action_dim), bool(sample_open_episodes)
        dtypes = {k: np.dtype((obs_dtypes or {}).get(k, _default_dtype(k))) for k in obs_shapes}
        self.obs_shapes = {k: tuple(int(d) for d in s) for k, s in obs_shapes.items()}
        self.obs_dtypes = dtypes
        cap = self.capacity
        self._obs = {k: np.zeros((cap, *s), dtypes[k]) for k, s in self.obs_shapes.items()}
        self._next_obs = {k: np.zeros((cap, *s), dtypes[k]) for k, s in self.obs_shapes.items()}
        f32, b = np.float32, np.bool_
        self._a: dict[str, np.ndarray] = {
            "action": np.zeros((cap, self.action_dim), f32),
            "raw_reward": np.zeros(cap, f32),  # r_t of the single step
            "terminated": np.zeros(cap, b),
            "truncated": np.zeros(cap, b),
            "is_demo": np.zeros(cap, b),
            "is_intervention": np.zeros(cap, b),
            "reward": np.zeros(cap, f32),  # n-step return R_t
            "discount": np.zeros(cap, f32),  # γ^m (1 - d)
            "next_index": np.zeros(cap, np.int64),  # slot of step t+m-1 (its next_obs is s_{t+m})
            "mc_return": np.full(cap, np.nan, f32),
            "ready": np.zeros(cap, b),
            "episode_id": np.full(cap, -1, np.int64),
            "step": np.zeros(cap, np.int64),  # t within the episode
        }
        self._cursor = self._size = self._num_ready = self._next_episode = 0
        self._open_start, self._open_len = 0, 0
        self._size_at_open = 0  # steps stored before the open episode began (to undo it exactly)
        self._pending: list[int] = []  # slots of the open episode whose n-step view is not yet known
        self._open_rewards: list[float] = []

    # --- size ---

    def __len__(self) -> int:
        """Number of stored steps (including the not-yet-sampleable ones)."""
        return self._size

    @property
    def num_sampleable(self) -> int:
        """Number of steps :meth:`sample` can return."""
        return self._num_ready

    @property
    def episode_open(self) -> bool:
        return self._open_len > 0

    # --- insertion ---

    def _claim(self, slots: np.ndarray) -> None:
        """Mark slots about to be overwritten as not sampleable."""
        self._num_ready -= int(np.count_nonzero(self._a["ready"][slots]))
        self._a["ready"][slots] = False
        self._a["mc_return"][slots] = np.nan

    def _mark_ready(self, slots: np.ndarray | list[int]) -> None:
        slots = np.asarray(slots, dtype=np.int64)
        self._num_ready += int(np.count_nonzero(~self._a["ready"][slots]))
        self._a["ready"][slots] = True

    def add(
        self,
        obs: dict[str, np.ndarray],
        action: np.ndarray,
        reward: float,
        next_obs: dict[str, np.ndarray],
        terminated: bool,
        truncated: bool,
        is_demo: bool = False,
        is_intervention: bool = False,
    ) -> None:
        """Append one step of the current episode (single env, in order); closes it on an episode end.

        ``obs``/``next_obs`` need every key of ``obs_shapes``; extra keys are ignored.
        """
        i = self._cursor
        self._claim(np.array([i]))
        for k in self._obs:
            self._obs[k][i] = obs[k]
            self._next_obs[k][i] = next_obs[k]
        a = self._a
        a["action"][i] = action
        a["raw_reward"][i] = reward
        a["terminated"][i], a["truncated"][i] = bool(terminated), bool(truncated)
        a["is_demo"][i], a["is_intervention"][i] = bool(is_demo), bool(is_intervention)
        if self._open_len == 0:
            self._open_start, self._size_at_open = i, self._size
        a["episode_id"][i], a["step"][i] = self._next_episode, self._open_len
        self._open_len += 1
        self._open_rewards.append(float(reward))
        self._pending.append(i)
        self._cursor = (i + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)
        if terminated or truncated:
            self._close(bool(terminated))
        elif len(self._pending) == self.n_step:  # the oldest pending step now has its full n-step view
            j = self._pending.pop(0)
            window = np.array([j, *self._pending])
            r = a["raw_reward"][window].astype(np.float64)
            a["reward"][j] = float(np.dot(self.gamma ** np.arange(self.n_step), r))
            a["discount"][j] = self.gamma**self.n_step
            a["next_index"][j] = window[-1]
            if self.sample_open_episodes:
                self._mark_ready([j])

    def end_episode(self) -> None:
        """Close the open episode as a truncation (bootstraps from its last ``next_obs``); no-op if none."""
        if self._open_len:
            self._close(terminated=False)

    def discard_open_episode(self) -> int:
        """Drop the steps of the open episode (a re-recorded teleop episode); returns how many. Its
        slots become free again; data it overwrote when the ring was full stays lost."""
        n = self._open_len
        if n:
            slots = (self._open_start + np.arange(n)) % self.capacity
            self._claim(slots)
            self._a["episode_id"][slots] = -1
            self._cursor = self._open_start
            if self._size_at_open + n <= self.capacity:  # it overwrote nothing: the ring shrinks back
                self._size = self._size_at_open
            self._pending, self._open_rewards, self._open_len = [], [], 0
        return n

    def _close(self, terminated: bool) -> None:
        a, pend = self._a, np.array(self._pending, dtype=np.int64)
        if len(pend):
            term = np.zeros(len(pend), bool)
            term[-1] = terminated
            ret, disc, nxt = n_step_returns(
                a["raw_reward"][pend], term, np.zeros(len(pend), bool), self.gamma, self.n_step
            )
            a["reward"][pend], a["discount"][pend], a["next_index"][pend] = ret, disc, pend[nxt]
        kept = min(self._open_len, self.capacity)
        slots = (self._open_start + np.arange(self._open_len - kept, self._open_len)) % self.capacity
        a["mc_return"][slots] = mc_returns(np.asarray(self._open_rewards), self.gamma)[-kept:]
        self._mark_ready(slots)
        self._pending, self._open_rewards, self._open_len = [], [], 0
        self._next_episode += 1

    def add_episode(
        self,
        obs: dict[str, np.ndarray],
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: dict[str, np.ndarray],
        terminated: np.ndarray | None = None,
        truncated: np.ndarray | None = None,
        is_demo: bool | np.ndarray = False,
        is_intervention: bool | np.ndarray = False,
    ) -> None:
        """Insert one whole episode of ``T ≤ capacity`` steps at once (demos, datasets); vectorized.

        Arrays are ``[T, ...]``. Only the last step may carry ``terminated``/``truncated``; if it
        carries neither, the episode is treated as truncated (bootstraps). No episode may be open.
        """
        if self._open_len:
            raise ValueError("ReplayBuffer.add_episode: an episode added with add() is still open")
        T = len(reward)
        if not 0 < T <= self.capacity:
            raise ValueError(f"ReplayBuffer.add_episode: need 0 < T <= capacity, got T={T}")
        term = np.zeros(T, bool) if terminated is None else np.asarray(terminated, bool)
        trunc = np.zeros(T, bool) if truncated is None else np.asarray(truncated, bool)
        if (term[:-1] | trunc[:-1]).any():
            raise ValueError("ReplayBuffer.add_episode: terminated/truncated set before the last step")
        slots = (self._cursor + np.arange(T)) % self.capacity
        self._claim(slots)
        for k in self._obs:
            self._obs[k][slots] = obs[k]
            self._next_obs[k][slots] = next_obs[k]
        a = self._a
        a["action"][slots] = action
        a["raw_reward"][slots] = reward
        a["terminated"][slots], a["truncated"][slots] = term, trunc
        a["is_demo"][slots], a["is_intervention"][slots] = is_demo, is_intervention
        a["episode_id"][slots], a["step"][slots] = self._next_episode, np.arange(T)
        ret, disc, nxt = n_step_returns(reward, term, trunc, self.gamma, self.n_step)
        a["reward"][slots], a["discount"][slots], a["next_index"][slots] = ret, disc, slots[nxt]
        a["mc_return"][slots] = mc_returns(reward, self.gamma)
        self._mark_ready(slots)
        self._cursor = int((self._cursor + T) % self.capacity)
        self._size = min(self._size + T, self.capacity)
        self._next_episode += 1

    # --- sampling ---

    def sample_indices(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Uniform slots among the sampleable steps (rejection sampling, exact fallback); ``[B]`` int64."""
        if self._num_ready == 0:
            raise ValueError("ReplayBuffer.sample: no sampleable transitions yet")
        ready = self._a["ready"]
        idx = rng.integers(0, self._size, size=batch_size)
        for _ in range(8):
            bad = ~ready[idx]
            if not bad.any():
                return idx
            idx[bad] = rng.integers(0, self._size, size=int(bad.sum()))
        bad = ~ready[idx]
        idx[bad] = rng.choice(np.flatnonzero(ready[: self._size]), size=int(bad.sum()))
        return idx

    def gather(self, idx: np.ndarray, device: torch.device | str | None = None) -> Batch:
        """The batch (see the module docstring) for the given slots."""
        a = self._a
        nxt = a["next_index"][idx]
        out: dict[str, np.ndarray] = {}
        for k in self._obs:
            out[f"obs/{k}"] = self._obs[k][idx]
            out[f"next_obs/{k}"] = self._next_obs[k][nxt]
        for k in ("action", "reward", "discount", "is_demo", "is_intervention", "mc_return"):
            out[k] = a[k][idx]
        return {
            k: torch.from_numpy(v).to(device) if device is not None else torch.from_numpy(v)
            for k, v in out.items()
        }

    def sample(
        self, batch_size: int, rng: np.random.Generator, device: torch.device | str | None = None
    ) -> Batch:
        """``batch_size`` uniform transitions as tensors on ``device`` (CPU by default)."""
        return self.gather(self.sample_indices(batch_size, rng), device)

    def sample_utd(
        self, batch_size: int, utd: int, rng: np.random.Generator, device: torch.device | str | None = None
    ) -> list[Batch]:
        """Draw ``utd·batch_size`` transitions at once and split them into ``utd`` minibatches (§11.4)."""
        return split_minibatches(self.sample(utd * batch_size, rng, device), utd)

    # --- persistence ---

    def state_dict(self) -> dict[str, Any]:
        """Arrays and scalars only (safetensors/JSON via ``robot_rl.core.serialization``); copies.

        Only the filled slots ``[:size]`` are saved (the ring fills from slot 0, so until it wraps
        the data is a prefix): a checkpoint of a mostly empty buffer stays small.
        """
        n = self._size
        return {
            "config": {
                "capacity": self.capacity,
                "n_step": self.n_step,
                "gamma": self.gamma,
                "action_dim": self.action_dim,
                "sample_open_episodes": int(self.sample_open_episodes),
            },
            "obs": {k: v[:n].copy() for k, v in self._obs.items()},
            "next_obs": {k: v[:n].copy() for k, v in self._next_obs.items()},
            "fields": {k: v[:n].copy() for k, v in self._a.items()},
            "cursor": self._cursor,
            "size": self._size,
            "num_ready": self._num_ready,
            "next_episode": self._next_episode,
            "open_start": self._open_start,
            "open_len": self._open_len,
            "size_at_open": self._size_at_open,
            "pending": np.array(self._pending, dtype=np.int64),
            "open_rewards": np.array(self._open_rewards, dtype=np.float64),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; capacity, n-step, γ and observation layout must match."""
        cfg = state["config"]
        for key, value in (
            ("capacity", self.capacity),
            ("n_step", self.n_step),
            ("gamma", self.gamma),
            ("action_dim", self.action_dim),
        ):
            if cfg[key] != value:
                raise ConfigError(
                    f"ReplayBuffer.load_state_dict: {key} is {cfg[key]} in the state, {value} here"
                )
        n = int(state["size"])
        for k, arr in self._obs.items():
            src = state["obs"].get(k)
            if src is None or src.shape != (n, *arr.shape[1:]) or src.dtype != arr.dtype:
                raise ConfigError(f"ReplayBuffer.load_state_dict: observation {k!r} has another shape/dtype")
            arr[:n] = src
            self._next_obs[k][:n] = state["next_obs"][k]
        for k, arr in self._a.items():
            arr[:n] = np.asarray(state["fields"][k]).astype(arr.dtype, copy=False)
        self._cursor, self._size = int(state["cursor"]), n
        self._num_ready, self._next_episode = int(state["num_ready"]), int(state["next_episode"])
        self._open_start, self._open_len = int(state["open_start"]), int(state["open_len"])
        self._size_at_open = int(state.get("size_at_open", max(int(state["size"]) - self._open_len, 0)))
        self._pending = [int(i) for i in np.asarray(state["pending"]).reshape(-1)]
        self._open_rewards = [float(r) for r in np.asarray(state["open_rewards"]).reshape(-1)]


class MixedSampler:
    """Draws ``round(B·prior_fraction)`` rows from ``prior`` and the rest from ``online`` (§11.4).

    Rows are concatenated prior-first. When one buffer has nothing sampleable, the whole batch comes
    from the other. ``prior_fraction`` = 0.5 for ResFiT/RLPD/EXPO/HIL-SERL, 0 for WSRL.
    """

    def __init__(self, online: ReplayBuffer, prior: ReplayBuffer, prior_fraction: float = 0.5):
        if not 0.0 <= prior_fraction <= 1.0:
            raise ConfigError(f"MixedSampler: prior_fraction must be in [0, 1], got {prior_fraction}")
        self.online, self.prior, self.prior_fraction = online, prior, float(prior_fraction)

    def split(self, batch_size: int) -> tuple[int, int]:
        """``(n_prior, n_online)`` for one minibatch, given which buffers are non-empty."""
        has_prior, has_online = self.prior.num_sampleable > 0, self.online.num_sampleable > 0
        if not (has_prior or has_online):
            raise ValueError("MixedSampler: both buffers are empty")
        if not has_online:
            return batch_size, 0
        if not has_prior:
            return 0, batch_size
        n_prior = round(batch_size * self.prior_fraction)
        return n_prior, batch_size - n_prior

    def sample_utd(
        self, batch_size: int, utd: int, rng: np.random.Generator, device: torch.device | str | None = None
    ) -> list[Batch]:
        """``utd`` minibatches of ``batch_size`` with the same prior/online split; one draw per buffer."""
        n_prior, n_online = self.split(batch_size)
        parts = []
        for buf, n in ((self.prior, n_prior), (self.online, n_online)):
            if n:
                batch = buf.sample(utd * n, rng, device)
                parts.append({k: v.reshape(utd, n, *v.shape[1:]) for k, v in batch.items()})
        if len(parts) == 1:
            merged = parts[0]
        else:
            if parts[0].keys() != parts[1].keys():
                raise ValueError(f"MixedSampler: key mismatch {sorted(parts[0])} vs {sorted(parts[1])}")
            merged = {k: torch.cat([parts[0][k], parts[1][k]], dim=1) for k in parts[0]}
        return [{k: v[g] for k, v in merged.items()} for g in range(utd)]

    def sample(
        self, batch_size: int, rng: np.random.Generator, device: torch.device | str | None = None
    ) -> Batch:
        """One mixed minibatch of ``batch_size`` rows."""
        return self.sample_utd(batch_size, 1, rng, device)[0]
