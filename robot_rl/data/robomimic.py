"""Export to / import from robomimic-style HDF5 (``data/demo_<i>/{obs,next_obs,actions,...}``).

Layout written by :func:`export_robomimic`::

    data/                       attrs: total (sum of num_samples), env_args (JSON), robot_rl (JSON)
      demo_<i>/                 attrs: num_samples, task, source, reward_source, success, metadata,
                                       ep_meta (JSON {"lang": task}, as robosuite 1.5 writes)
        obs/<key>               observations 0..T-1        [T, ...]
        next_obs/<key>          observations 1..T          [T, ...]
        actions [T, Da]  rewards [T]  dones [T] uint8 (= terminated)
        proposed_actions [T, Da]  terminated [T]  truncated [T]  is_demo [T]  is_intervention [T]
    mask/success, mask/failure  demo names (filter keys, as robomimic's ``mask/<name>``)

Observation keys: ``"state"`` -> ``obs/state``, ``"pixels/<cam>"`` -> ``obs/<cam>_image``, any
other key -> ``obs/<key>`` with ``/`` replaced by ``_``. ``obs`` + ``next_obs`` hold all ``T + 1``
observations, so a round trip is exact. The full mapping is in ``docs/data.md``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.core.errors import DataError
from robot_rl.data.episode_store import PIXELS_PREFIX, EpisodeRecord, EpisodeStore

GYM_ENV_TYPE = 2  # robomimic.envs.env_base.EnvType.GYM_TYPE
_DEMO_RE = re.compile(r"^demo_(\d+)$")
_EXTRA_STEP_FIELDS = ("proposed_actions", "terminated", "truncated", "is_demo", "is_intervention")


def obs_key_to_hdf5(key: str) -> str:
    """``"pixels/<cam>"`` -> ``"<cam>_image"``; other keys keep their name with ``/`` -> ``_``."""
    if key.startswith(PIXELS_PREFIX):
        return key[len(PIXELS_PREFIX) :].replace("/", "_") + "_image"
    return key.replace("/", "_")


def export_robomimic(store: EpisodeStore | str | Path, path: str | Path) -> Path:
    """Write every episode of ``store`` to the HDF5 file ``path`` (temp file + rename).

    Args:
        store: an :class:`EpisodeStore` or its folder.
        path: the ``.hdf5`` file to create (replaced if it exists).

    Returns:
        ``path`` as a Path.
    """
    import h5py

    if not isinstance(store, EpisodeStore):
        store = EpisodeStore(store)
    path = Path(path)
    spec = store.obs_spec
    if not spec or len(store) == 0:
        raise DataError(f"store {store.root} has no episodes to export")
    names = {key: obs_key_to_hdf5(key) for key in spec}
    if len(set(names.values())) != len(names):
        raise DataError(f"observation keys {sorted(spec)} collide after mapping to HDF5 names {names}")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    total = 0
    success, failure = [], []
    try:
        with h5py.File(tmp, "w") as f:
            data = f.create_group("data")
            for i, rec in enumerate(store):
                demo = data.create_group(f"demo_{i}")
                T = rec.length
                for key, name in names.items():
                    demo.create_dataset(f"obs/{name}", data=rec.observations[key][:T])
                    demo.create_dataset(f"next_obs/{name}", data=rec.observations[key][1:])
                demo.create_dataset("actions", data=rec.actions)
                demo.create_dataset("rewards", data=rec.rewards)
                demo.create_dataset("dones", data=rec.terminated.astype(np.uint8))
                for field in _EXTRA_STEP_FIELDS:
                    demo.create_dataset(field, data=getattr(rec, field))
                demo.attrs["num_samples"] = T
                demo.attrs["task"] = rec.task
                demo.attrs["ep_meta"] = json.dumps({"lang": rec.task})
                demo.attrs["source"] = rec.source
                demo.attrs["reward_source"] = rec.reward_source
                demo.attrs["success"] = rec.success
                demo.attrs["metadata"] = json.dumps(rec.metadata)
                (success if rec.success else failure).append(f"demo_{i}")
                total += T
            data.attrs["total"] = total
            data.attrs["env_args"] = json.dumps(
                {"env_name": store.env_id or "", "type": GYM_ENV_TYPE, "env_kwargs": {}}
            )
            data.attrs["robot_rl"] = json.dumps(
                {
                    "format_version": 1,
                    "fps": store.fps,
                    "obs_keys": {name: key for key, name in names.items()},
                }
            )
            for mask, demos in (("success", success), ("failure", failure)):
                f.create_dataset(f"mask/{mask}", data=np.array(demos, dtype="S"), shape=(len(demos),))
            f.flush()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _attr(group: Any, name: str, default: Any = None) -> Any:
    value = group.attrs.get(name, default)
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.generic):
        value = value.item()
    return value


def import_robomimic(
    path: str | Path,
    store_root: str | Path,
    *,
    state_keys: list[str] | None = None,
    source: str = "import:robomimic",
    reward_source: str = "sim",
    assume_success: bool = True,
    fps: float | None = None,
) -> EpisodeStore:
    """Read a robomimic HDF5 file into an episode store (created, or appended to), one demo at a time.

    Args:
        path: the HDF5 file.
        store_root: the episode store folder.
        state_keys: low-dim HDF5 obs keys to concatenate (in this order) into ``"state"``, e.g.
            ``["robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object"]``; they are
            then not kept as separate keys. Default: keep every key as it is.
        source, reward_source, assume_success: for demos that do not record them.
        fps: control rate for the store (robomimic files do not record one; robosuite runs 20 Hz).

    Returns:
        The :class:`EpisodeStore`.
    """
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError as err:
        raise DataError(f"missing robomimic file {path}") from err
    except OSError as err:
        raise DataError(f"corrupt or non-HDF5 file {path}: {err}") from err
    with f:
        if "data" not in f:
            raise DataError(f"{path} is not a robomimic file: no 'data' group")
        data = f["data"]
        ours = json.loads(_attr(data, "robot_rl", "{}"))
        env_id = json.loads(_attr(data, "env_args", "{}")).get("env_name") or None
        store = EpisodeStore(store_root, create=True, fps=fps or ours.get("fps"), env_id=env_id)
        demos = sorted((n for n in data if _DEMO_RE.match(n)), key=lambda n: int(n[len("demo_") :]))
        if not demos:
            raise DataError(f"{path}: no data/demo_<i> groups")
        for name in demos:
            demo = data[name]
            where = f"{path}:data/{name}"
            try:
                fields = _read_demo(demo, ours.get("obs_keys") or {}, state_keys)
                record = EpisodeRecord(
                    **fields,
                    reward_source=_attr(demo, "reward_source") or reward_source,
                    source=_attr(demo, "source") or source,
                    task=_attr(demo, "task") or json.loads(_attr(demo, "ep_meta", "{}")).get("lang", ""),
                    success=bool(_attr(demo, "success", assume_success)),
                )
                store.append(record)
            except DataError as err:
                raise DataError(f"{where}: {err}") from err
            except KeyError as err:
                raise DataError(f"{where}: missing {err}") from err
    return store


def _read_demo(demo: Any, obs_keys: dict[str, str], state_keys: list[str] | None) -> dict[str, Any]:
    for required in ("obs", "actions"):
        if required not in demo:
            raise DataError(f"missing {required!r}")
    actions = demo["actions"][()]
    T = len(actions)
    has_next = "next_obs" in demo
    observations: dict[str, np.ndarray] = {}
    for name in demo["obs"]:
        values = demo["obs"][name][()]
        final = demo["next_obs"][name][-1] if has_next and name in demo["next_obs"] else values[-1]
        full = np.concatenate([values, np.asarray(final)[None]])
        if full.ndim == 1:
            full = full[:, None]
        if name in obs_keys:
            key = obs_keys[name]
        elif name.endswith("_image") and full.dtype == np.uint8 and full.ndim == 4:
            key = PIXELS_PREFIX + name[: -len("_image")]
        else:
            key = name
        observations[key] = full
    metadata = json.loads(_attr(demo, "metadata", "null") or "null")
    if metadata is None:
        metadata = {"robomimic_demo": demo.name.rsplit("/", 1)[-1]}
        if not has_next:
            metadata["final_observation"] = "duplicated"
    if state_keys:
        missing = [k for k in state_keys if k not in observations]
        if missing:
            raise DataError(f"state_keys {missing} not in obs (it has {sorted(observations)})")
        observations["state"] = np.concatenate(
            [observations.pop(k).astype(np.float32).reshape(T + 1, -1) for k in state_keys], axis=1
        )
    dones = demo["dones"][()].astype(bool) if "dones" in demo else np.zeros(T, dtype=bool)
    truncated_default = np.zeros(T, dtype=bool)
    truncated_default[-1] = not dones[-1]
    fields: dict[str, Any] = {
        "observations": observations,
        "actions": actions,
        "rewards": demo["rewards"][()] if "rewards" in demo else np.zeros(T, dtype=np.float32),
        "terminated": demo["terminated"][()] if "terminated" in demo else dones,
        "truncated": demo["truncated"][()] if "truncated" in demo else truncated_default,
        "proposed_actions": demo["proposed_actions"][()] if "proposed_actions" in demo else None,
        "is_demo": demo["is_demo"][()] if "is_demo" in demo else np.ones(T, dtype=bool),
        "is_intervention": demo["is_intervention"][()] if "is_intervention" in demo else None,
        "metadata": metadata,
    }
    return fields
