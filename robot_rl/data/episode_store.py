"""The episode store (ARCHITECTURE §4): one folder, one ``.npz`` file per episode, written atomically.

Layout (documented in ``docs/data.md``)::

    <root>/
      meta.json                    format version, obs keys -> shape/dtype, action dim, fps, env id
      index.json                   per-episode summary (length, success, source, task); a cache
      episodes/episode_000000.npz  one episode: arrays + a JSON header (no pickle anywhere)

Shapes: ``T`` steps of an episode, ``Ds`` state dim, ``Da`` action dim, ``H, W`` camera size.
Observations hold ``T + 1`` entries (the observation before every action plus the final one).

Writes go to a temporary name in the same folder, are fsync'ed and renamed, so a crash loses at
most the episode being written. The episode files are the source of truth; ``index.json`` is
rebuilt from them when it is missing, stale or corrupt. One writer per store at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from robot_rl.core.errors import DataError

FORMAT_NAME = "robot_rl.episode_store"
FORMAT_VERSION = 1
REWARD_SOURCES = ("sim", "classifier", "vlm", "human", "none")
STATE_KEY = "state"
PIXELS_PREFIX = "pixels/"

_EPISODE_RE = re.compile(r"^episode_(\d{6})\.npz$")
_TMP_RE = re.compile(r"^\..+\.tmp-(\d+)$")
_HEADER_KEY = "__header__"
_FLOAT_STEP_FIELDS = ("actions", "proposed_actions", "rewards")
_BOOL_STEP_FIELDS = ("terminated", "truncated", "is_demo", "is_intervention")


def _as_float32(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub":
        raise DataError(f"field {name!r}: expected a real-valued array, got dtype {arr.dtype}")
    with np.errstate(over="ignore"):
        arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise DataError(f"field {name!r} contains NaN or inf")
    return arr


def _as_bool(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind in "iu" and np.all((arr == 0) | (arr == 1)):
        return arr.astype(np.bool_)
    raise DataError(f"field {name!r}: expected a bool array, got dtype {arr.dtype}")


@dataclass
class EpisodeRecord:
    """One episode with its per-step flags.

    Attributes:
        observations: ``{key: [T+1, ...]}``. ``"state"`` float32 ``[T+1, Ds]``; ``"pixels/<camera>"``
            uint8 ``[T+1, H, W, 3]``; any other key a real-valued array (stored as float32).
        actions: executed actions, float32 ``[T, Da]``.
        rewards: float32 ``[T]``.
        terminated: bool ``[T]`` (the MDP ended: no bootstrapping past this step).
        truncated: bool ``[T]`` (time limit / operator stop).
        proposed_actions: what the policy proposed, float32 ``[T, Da]``; ``None`` -> a copy of
            ``actions`` (demonstrations).
        is_demo: bool ``[T]``; ``None`` -> all False.
        is_intervention: bool ``[T]`` (a human overrode the policy); ``None`` -> all False.
        reward_source: one of ``"sim" | "classifier" | "vlm" | "human" | "none"``.
        source: who produced the actions, e.g. ``"scripted_expert"``, ``"teleop"``, ``"policy"``,
            ``"import:lerobot"``.
        task: language instruction.
        success: whether the episode reached the goal.
        metadata: JSON-able extras (seed, env_id, intervention burst ids, device, ...).

    Integer/float64 inputs are converted to float32 and 0/1 integers to bool; anything else that
    does not fit raises :class:`DataError` naming the field.
    """

    observations: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    proposed_actions: np.ndarray | None = None
    is_demo: np.ndarray | None = None
    is_intervention: np.ndarray | None = None
    reward_source: str = "sim"
    source: str = "policy"
    task: str = ""
    success: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.actions = _as_float32("actions", self.actions)
        if self.actions.ndim != 2 or len(self.actions) == 0:
            raise DataError(f"field 'actions': expected shape [T>=1, Da], got {self.actions.shape}")
        T = len(self.actions)
        if self.proposed_actions is None:
            self.proposed_actions = self.actions.copy()
        for name in ("is_demo", "is_intervention"):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(T, dtype=np.bool_))
        for name in _FLOAT_STEP_FIELDS[1:]:
            setattr(self, name, _as_float32(name, getattr(self, name)))
        for name in _BOOL_STEP_FIELDS:
            setattr(self, name, _as_bool(name, getattr(self, name)))
        if self.proposed_actions.shape != self.actions.shape:
            raise DataError(
                f"field 'proposed_actions': shape {self.proposed_actions.shape} != actions "
                f"{self.actions.shape}"
            )
        for name in ("rewards", *_BOOL_STEP_FIELDS):
            arr = getattr(self, name)
            if arr.shape != (T,):
                raise DataError(f"field {name!r}: expected shape [{T}] (one per action), got {arr.shape}")
        if not isinstance(self.observations, dict) or not self.observations:
            raise DataError("field 'observations': expected a non-empty dict of arrays")
        obs: dict[str, np.ndarray] = {}
        for key, value in self.observations.items():
            if not isinstance(key, str) or not key:
                raise DataError(f"field 'observations': keys must be non-empty strings, got {key!r}")
            name = f"observations[{key!r}]"
            if key.startswith(PIXELS_PREFIX):
                arr = np.asarray(value)
                if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
                    raise DataError(
                        f"field {name}: expected uint8 [T+1, H, W, 3], got {arr.dtype} {arr.shape}"
                    )
            else:
                arr = _as_float32(name, value)
                if arr.ndim < 1:
                    raise DataError(f"field {name}: expected [T+1, ...], got a scalar")
            if len(arr) != T + 1:
                raise DataError(
                    f"field {name}: {len(arr)} observations for {T} actions (expected T+1 = {T + 1}, "
                    "the final observation included)"
                )
            obs[key] = arr
        self.observations = obs
        if self.reward_source not in REWARD_SOURCES:
            raise DataError(f"field 'reward_source': {self.reward_source!r} is not one of {REWARD_SOURCES}")
        for name in ("source", "task"):
            if not isinstance(getattr(self, name), str):
                raise DataError(f"field {name!r}: expected a str, got {type(getattr(self, name)).__name__}")
        if not self.source:
            raise DataError("field 'source': must not be empty")
        if not isinstance(self.success, (bool, np.bool_)):
            raise DataError(f"field 'success': expected a bool, got {type(self.success).__name__}")
        self.success = bool(self.success)
        if not isinstance(self.metadata, dict):
            raise DataError(f"field 'metadata': expected a dict, got {type(self.metadata).__name__}")
        try:
            json.dumps(self.metadata, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise DataError(f"field 'metadata': not JSON-serializable ({err})") from err

    @property
    def length(self) -> int:
        """Number of steps ``T`` (actions); observations hold ``T + 1``."""
        return len(self.actions)

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])

    def obs_spec(self) -> dict[str, dict[str, Any]]:
        """``{key: {"shape": per-step shape, "dtype": name}}`` of the observations."""
        return {k: {"shape": list(v.shape[1:]), "dtype": str(v.dtype)} for k, v in self.observations.items()}

    def summary(self) -> dict[str, Any]:
        """The small per-episode entry kept in the store index."""
        return {
            "length": self.length,
            "success": self.success,
            "source": self.source,
            "task": self.task,
            "n_interventions": int(self.is_intervention.sum()),
        }

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat ``{name: array}`` used for the ``.npz`` file (observations under ``obs/<key>``)."""
        header = {
            "format_version": FORMAT_VERSION,
            "reward_source": self.reward_source,
            "source": self.source,
            "task": self.task,
            "success": self.success,
            "metadata": self.metadata,
        }
        arrays = {f"obs/{k}": v for k, v in self.observations.items()}
        for name in (*_FLOAT_STEP_FIELDS, *_BOOL_STEP_FIELDS):
            arrays[name] = getattr(self, name)
        arrays[_HEADER_KEY] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> EpisodeRecord:
        """Inverse of :meth:`to_arrays`; raises :class:`DataError` naming a missing entry."""
        for name in (_HEADER_KEY, *_FLOAT_STEP_FIELDS, *_BOOL_STEP_FIELDS):
            if name not in arrays:
                raise DataError(f"missing entry {name!r}")
        try:
            header = json.loads(bytes(np.asarray(arrays[_HEADER_KEY], dtype=np.uint8)).decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(f"corrupt header: {err}") from err
        if header.get("format_version") != FORMAT_VERSION:
            raise DataError(f"unsupported episode format_version {header.get('format_version')!r}")
        obs = {k[len("obs/") :]: v for k, v in arrays.items() if k.startswith("obs/")}
        return cls(
            observations=obs,
            **{name: arrays[name] for name in (*_FLOAT_STEP_FIELDS, *_BOOL_STEP_FIELDS)},
            reward_source=header["reward_source"],
            source=header["source"],
            task=header["task"],
            success=header["success"],
            metadata=header["metadata"],
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Run ``write(file)`` on ``.<name>.tmp-<pid>`` next to ``path``, fsync, rename onto ``path``.

    (Same scheme as ``robot_rl.core.serialization.write_atomic_bytes``, but streaming and without
    importing torch, so recorders can use the store without it.)
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_atomic_bytes(path: Path, data: bytes) -> None:
    """:func:`atomic_write` of ``data``."""
    atomic_write(path, lambda f: f.write(data))


def read_episode_file(path: Path) -> EpisodeRecord:
    """Load one episode file (``allow_pickle=False``); :class:`DataError` names the file."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError as err:
        raise DataError(f"missing episode file {path}") from err
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise DataError(f"corrupt or empty episode file {path}: {err}") from err
    try:
        return EpisodeRecord.from_arrays(arrays)
    except DataError as err:
        raise DataError(f"episode file {path}: {err}") from err


def _read_summary(path: Path) -> dict[str, Any]:
    return read_episode_file(path).summary()


class EpisodeStore:
    """A folder of episodes with lazy per-episode access.

    Args:
        root: the store folder.
        create: create the folder (and ``meta.json``) when it is not a store yet; when False,
            opening a folder that is not a store raises :class:`DataError`.
        fps: control rate in Hz recorded in ``meta.json`` (used by exporters); when opening an
            existing store with a different value, raises :class:`DataError`.
        env_id: the environment id recorded in ``meta.json``.
        compress: write episodes with zip deflate (smaller pixels, slower); fixed at creation.

    The observation keys, per-step shapes/dtypes and the action dim are fixed by the first
    appended episode (or read from ``meta.json``); later episodes must match.
    """

    def __init__(
        self,
        root: str | Path,
        create: bool = False,
        fps: float | None = None,
        env_id: str | None = None,
        compress: bool = False,
    ):
        self.root = Path(root)
        self.episodes_dir = self.root / "episodes"
        meta_path = self.root / "meta.json"
        if not meta_path.is_file():
            if not create:
                what = "does not exist" if not self.root.exists() else "has no meta.json"
                raise DataError(f"{self.root} is not an episode store ({what}); pass create=True to make one")
            if self.root.exists() and any(p.name != "episodes" for p in self.root.iterdir()):
                raise DataError(f"refusing to create an episode store in non-empty folder {self.root}")
            from robot_rl import __version__

            self.episodes_dir.mkdir(parents=True, exist_ok=True)
            self.meta: dict[str, Any] = {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "created_with": f"robot_rl {__version__}",
                "obs": None,
                "action_dim": None,
                "fps": None if fps is None else float(fps),
                "env_id": env_id,
                "compression": "deflate" if compress else "none",
            }
            self._write_meta()
        else:
            self.meta = self._read_meta(meta_path)
            if fps is not None:
                if self.meta.get("fps") is None:
                    self.meta["fps"] = float(fps)
                    self._write_meta()
                elif float(fps) != float(self.meta["fps"]):
                    raise DataError(f"{meta_path}: fps {self.meta['fps']} != requested fps {fps}")
            if env_id is not None and self.meta.get("env_id") is None:
                self.meta["env_id"] = env_id
                self._write_meta()
            self.episodes_dir.mkdir(exist_ok=True)
        self._clean_temp_files()
        self._index = self._load_index()

    # -- meta / index -------------------------------------------------------------------------

    @staticmethod
    def _read_meta(path: Path) -> dict[str, Any]:
        try:
            meta = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(f"corrupt store metadata {path}: {err}") from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise DataError(f"{path} is not episode store metadata (field 'format' != {FORMAT_NAME!r})")
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataError(
                f"{path}: field 'format_version' is {meta.get('format_version')!r}, this robot_rl "
                f"reads version {FORMAT_VERSION}"
            )
        return meta

    def _write_meta(self) -> None:
        write_atomic_bytes(self.root / "meta.json", json.dumps(self.meta, indent=2).encode())

    def _episode_path(self, index: int) -> Path:
        return self.episodes_dir / f"episode_{index:06d}.npz"

    def _clean_temp_files(self) -> None:
        for path in self.episodes_dir.iterdir():
            match = _TMP_RE.match(path.name)
            if match and not _pid_alive(int(match.group(1))):
                with contextlib.suppress(OSError):  # read-only store: temp files are ignored anyway
                    path.unlink()

    def _load_index(self) -> list[dict[str, Any]]:
        found = sorted(
            int(m.group(1)) for p in self.episodes_dir.iterdir() if (m := _EPISODE_RE.match(p.name))
        )
        if found != list(range(len(found))):
            missing = sorted(set(range(found[-1] + 1)) - set(found))
            raise DataError(f"episode store {self.root} is missing {self._episode_path(missing[0])}")
        index_path = self.root / "index.json"
        entries: list[dict[str, Any]] = []
        if index_path.is_file():
            try:
                loaded = json.loads(index_path.read_text()).get("episodes", [])
                if isinstance(loaded, list) and all(isinstance(e, dict) for e in loaded):
                    entries = loaded
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
                entries = []  # a cache: rebuilt from the episode files below
        if len(entries) > len(found):
            raise DataError(f"episode store {self.root} is missing {self._episode_path(len(found))}")
        if len(entries) < len(found):
            entries = entries + [
                _read_summary(self._episode_path(i)) for i in range(len(entries), len(found))
            ]
            with contextlib.suppress(OSError):  # read-only store: the index stays in memory
                self._write_index(entries)
        return entries

    def _write_index(self, entries: list[dict[str, Any]]) -> None:
        write_atomic_bytes(self.root / "index.json", json.dumps({"episodes": entries}).encode())

    # -- public API ---------------------------------------------------------------------------

    @property
    def fps(self) -> float | None:
        return self.meta.get("fps")

    @property
    def env_id(self) -> str | None:
        return self.meta.get("env_id")

    @property
    def obs_spec(self) -> dict[str, dict[str, Any]] | None:
        """``{key: {"shape": [...], "dtype": "float32" | "uint8"}}``; None before the first append."""
        return self.meta.get("obs")

    @property
    def action_dim(self) -> int | None:
        return self.meta.get("action_dim")

    def _check_compatible(self, record: EpisodeRecord) -> None:
        spec = self.meta["obs"]
        if spec is None:
            return
        got = record.obs_spec()
        for key in sorted(set(spec) | set(got)):
            if key not in got:
                raise DataError(f"observation key {key!r} is missing (store {self.root} has {sorted(spec)})")
            if key not in spec:
                raise DataError(
                    f"observation key {key!r} is not in store {self.root} (it has {sorted(spec)})"
                )
            if got[key] != spec[key]:
                raise DataError(
                    f"observation key {key!r}: shape/dtype {got[key]} != store {self.root} {spec[key]}"
                )
        if record.action_dim != self.meta["action_dim"]:
            raise DataError(
                f"field 'actions': dim {record.action_dim} != store action_dim {self.meta['action_dim']}"
            )

    def append(self, record: EpisodeRecord) -> int:
        """Write ``record`` as the next episode (atomically) and return its index.

        Raises:
            DataError: observation keys/shapes/dtypes or action dim differ from the store's.
        """
        if not isinstance(record, EpisodeRecord):
            raise DataError(f"append expects an EpisodeRecord, got {type(record).__name__}")
        self._check_compatible(record)
        if self.meta["obs"] is None:
            self.meta["obs"] = record.obs_spec()
            self.meta["action_dim"] = record.action_dim
            self._write_meta()
        index = len(self._index)
        path = self._episode_path(index)
        save = np.savez_compressed if self.meta.get("compression") == "deflate" else np.savez
        arrays = record.to_arrays()
        atomic_write(path, lambda f: save(f, **arrays))
        self._index.append(record.summary())
        self._write_index(self._index)
        return index

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> EpisodeRecord:
        """Load episode ``index`` (negative counts from the end); reads only that episode's file."""
        n = len(self._index)
        if not -n <= index < n:
            raise IndexError(f"episode {index} out of range for a store of {n}")
        return read_episode_file(self._episode_path(index % n))

    def __iter__(self) -> Iterator[EpisodeRecord]:
        """Episodes in order, one loaded at a time."""
        for i in range(len(self)):
            yield self[i]

    def index_entry(self, index: int) -> dict[str, Any]:
        """The index summary of one episode (length, success, source, task, n_interventions)."""
        return dict(self._index[index])

    def lengths(self) -> np.ndarray:
        """Steps per episode, int64 ``[N]`` (from the index; no episode is loaded)."""
        return np.array([e["length"] for e in self._index], dtype=np.int64)

    def filter(self, success: bool | None = None, source: str | None = None) -> list[int]:
        """Indices of the episodes matching every given criterion (from the index)."""
        return [
            i
            for i, e in enumerate(self._index)
            if (success is None or e["success"] == success) and (source is None or e["source"] == source)
        ]

    def __repr__(self) -> str:
        return f"EpisodeStore({str(self.root)!r}, episodes={len(self)}, obs={sorted(self.obs_spec or {})})"
