"""Export to / import from the LeRobotDataset **v3.0** layout (parquet + MP4), without ``lerobot``.

Layout written by :func:`export_lerobot` (and read by :func:`import_lerobot`)::

    meta/info.json                                 codebase_version "v3.0", fps (int), features, totals
    meta/stats.json                                per-feature min/max/mean/std/count (+ quantiles, low-dim)
    meta/tasks.parquet                             task string (pandas index "task") -> task_index
    meta/episodes/chunk-000/file-000.parquet       one row per episode, exactly LeRobot's columns
                                                   (lengths, offsets, video spans, per-episode stats/*)
    meta/robot_rl/episodes.parquet                 ours: one row per episode (final observation, success,
                                                   source, reward_source, metadata)
    data/chunk-000/file-000.parquet                one row per step (all episodes)
    videos/observation.images.<cam>/chunk-000/file-000.mp4   frames of all episodes, concatenated

The episodes table holds LeRobot's columns only, so that LeRobot can append episodes to an
exported dataset (its next episodes file must have the same columns). LeRobot stores ``T`` frames
per episode; our episodes hold ``T + 1`` observations. The final observation ``T`` and the other
per-episode fields LeRobot has no column for go to the sidecar ``meta/robot_rl/episodes.parquet``
(low-dim: list<float32>; camera: the raw ``H*W*3`` uint8 bytes), so a round trip through our own
exporter is exact for everything but the (lossy) video. Episodes without a sidecar row (made
elsewhere, appended by LeRobot, or after LeRobot's ``delete_episodes`` / ``aggregate_datasets``,
which do not copy the sidecar) get the last frame's observation duplicated as the final one and
``metadata["final_observation"] = "duplicated"``. Exports of the earlier layout, which kept these
fields in ``robot_rl/*`` columns of the episodes table, still import. The full field mapping and
what LeRobot's tools keep are in ``docs/data.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.core.errors import DataError
from robot_rl.data.episode_store import (
    PIXELS_PREFIX,
    STATE_KEY,
    EpisodeRecord,
    EpisodeStore,
    write_atomic_bytes,
)

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
SIDECAR_PATH = "meta/robot_rl/episodes.parquet"
FINAL_PREFIX = "robot_rl/final/"  # episodes-table columns of the earlier layout (still imported)
SIDECAR_FINAL_PREFIX = "final/"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f"q{int(q * 100):02d}" for q in QUANTILES)  # q01 q10 q50 q90 q99
HISTOGRAM_BINS = 5000  # LeRobot's per-episode quantiles come from a histogram of this many bins
_CODEC_NAMES = {"libx264": "h264", "libx264rgb": "h264", "libsvtav1": "av1", "libaom-av1": "av1"}


def obs_key_to_feature(key: str) -> str:
    """``"state"`` -> ``"observation.state"``, ``"pixels/<cam>"`` -> ``"observation.images.<cam>"``,
    any other key ``k`` -> ``"observation.<k>"`` (``/`` replaced by ``.``)."""
    if key == STATE_KEY:
        return "observation.state"
    if key.startswith(PIXELS_PREFIX):
        return "observation.images." + key[len(PIXELS_PREFIX) :].replace("/", ".")
    return "observation." + key.replace("/", ".")


def _feature_to_obs_key(name: str, feature: dict[str, Any]) -> str:
    if name == "observation.state":
        return STATE_KEY
    rest = name[len("observation.") :]
    if feature.get("dtype") == "video":
        return PIXELS_PREFIX + (rest[len("images.") :] if rest.startswith("images.") else rest)
    return rest


# -- video ---------------------------------------------------------------------------------------


class _VideoWriter:
    """Appends RGB frames ``[n, H, W, 3]`` uint8 to one MP4 file with pts = frame number / fps."""

    def __init__(
        self, path: Path, fps: float, height: int, width: int, vcodec: str, pix_fmt: str, crf: int, gop: int
    ):
        import av

        if pix_fmt.startswith("yuv420") and (height % 2 or width % 2):
            raise DataError(f"{path}: pix_fmt {pix_fmt} needs even frame sizes, got {height}x{width}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(path), mode="w")
        rate = Fraction(fps).limit_denominator(1000)
        self.stream = self.container.add_stream(vcodec, rate=rate)
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, pix_fmt
        self.stream.options = {"crf": str(crf), "g": str(gop)}
        self.time_base = 1 / rate
        self.n = 0

    def write(self, frames: np.ndarray) -> None:
        import av

        for frame in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts, vf.time_base = self.n, self.time_base
            self.n += 1
            for packet in self.stream.encode(vf):
                self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


class _VideoCursor:
    """Reads frame ranges of MP4 files front to back, reopening only when asked to go backwards."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.container: Any = None
        self.frames: Iterator[Any] | None = None
        self.position = 0  # index of the next frame the iterator yields

    def _open(self, path: Path) -> None:
        import av

        self.close()
        try:
            self.container = av.open(str(path))
        except (OSError, av.error.FFmpegError) as err:
            raise DataError(f"cannot open video {path}: {err}") from err
        self.path, self.position = path, 0
        self.frames = self.container.decode(video=0)

    def read(self, path: Path, start: int, count: int) -> np.ndarray:
        """Frames ``start .. start+count-1`` of ``path`` as uint8 ``[count, H, W, 3]``."""
        if path != self.path or start < self.position:
            self._open(path)
        out = []
        assert self.frames is not None
        try:
            while len(out) < count:
                frame = next(self.frames)
                index = self.position
                self.position += 1
                if index >= start:
                    out.append(frame.to_ndarray(format="rgb24"))
        except StopIteration:
            raise DataError(
                f"video {path} ends at frame {self.position}, expected frames {start}..{start + count - 1}"
            ) from None
        return np.stack(out)

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
        self.container, self.frames, self.path = None, None, None


# -- stats ---------------------------------------------------------------------------------------


class _Stats:
    """Running min/max/mean/std/count per feature (+ quantiles for low-dim features)."""

    def __init__(self) -> None:
        self.acc: dict[str, dict[str, Any]] = {}
        self.values: dict[str, list[np.ndarray]] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}

    def add(
        self,
        name: str,
        x: np.ndarray,
        axes: tuple[int, ...],
        keep: bool,
        shape: tuple[int, ...] | None = None,
    ) -> None:
        """Reduce ``x`` over ``axes``; ``keep`` the values for quantiles; report stats with ``shape``."""
        x = x.astype(np.float64)
        if shape is not None:
            self.shapes[name] = shape
        a = self.acc.setdefault(name, {"n": 0, "s": 0.0, "ss": 0.0, "min": np.inf, "max": -np.inf})
        a["n"] += int(np.prod([x.shape[i] for i in axes]))
        a["s"] = a["s"] + x.sum(axis=axes)
        a["ss"] = a["ss"] + (x * x).sum(axis=axes)
        a["min"] = np.minimum(a["min"], x.min(axis=axes))
        a["max"] = np.maximum(a["max"], x.max(axis=axes))
        if keep:
            self.values.setdefault(name, []).append(x.reshape(x.shape[0], -1))

    def result(self, n_frames: dict[str, int]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, a in self.acc.items():
            mean = a["s"] / a["n"]
            std = np.sqrt(np.maximum(a["ss"] / a["n"] - mean * mean, 0.0))
            entry = {"min": a["min"], "max": a["max"], "mean": mean, "std": std}
            shape = self.shapes.get(name, np.shape(mean))
            out[name] = {k: np.asarray(v).reshape(shape).tolist() for k, v in entry.items()}
            out[name]["count"] = [n_frames[name]]
            if name in self.values:
                allv = np.concatenate(self.values[name])
                for q in QUANTILES:
                    out[name][f"q{round(q * 100):02d}"] = np.quantile(allv, q, axis=0).tolist()
        return out


# -- per-episode stats (the episodes table's stats/<feature>/<stat> columns) ----------------------


def _sample_frame_indices(n: int) -> np.ndarray:
    """The frames LeRobot samples for an episode's image stats: all below 100 frames, else
    ``max(100, min(n**0.75, 10000))`` evenly spaced ones."""
    num = n if n < 100 else max(100, min(int(n**0.75), 10_000))
    return np.round(np.linspace(0, n - 1, num)).astype(int)


def _histogram_quantiles(x: np.ndarray) -> list[np.ndarray]:
    """Quantiles of each column of ``x`` ``[n, d]`` (float64, ``n >= 2``) as LeRobot estimates
    them: a histogram of ``HISTOGRAM_BINS`` bins over ``[min - 1e-10, max + 1e-10]``, the bin where
    the cumulative count first reaches ``q * n``, linear interpolation inside it."""
    n = len(x)
    out = np.empty((len(QUANTILES), x.shape[1]))
    for j in range(x.shape[1]):
        col = x[:, j]
        edges = np.linspace(col.min() - 1e-10, col.max() + 1e-10, HISTOGRAM_BINS + 1)
        cum = np.cumsum(np.histogram(col, bins=edges)[0])
        for i, q in enumerate(QUANTILES):
            target = q * n
            k = int(np.searchsorted(cum, target))
            if k == 0:
                out[i, j] = edges[0]
            elif k >= len(cum):
                out[i, j] = edges[-1]
            else:
                before = cum[k - 1]
                out[i, j] = edges[k] + (target - before) / (cum[k] - before) * (edges[k + 1] - edges[k])
    return list(out)


def _sample_stats(x: np.ndarray, count: int) -> dict[str, np.ndarray]:
    """min/max (in ``x``'s dtype), mean/std (population)/quantiles (float64) of each column of
    ``x`` ``[n, d]``; ``count`` as ``[count]``. One sample: the quantiles are the mean (as LeRobot)."""
    xf = x.astype(np.float64)
    stats = {
        "min": x.min(axis=0),
        "max": x.max(axis=0),
        "mean": xf.mean(axis=0),
        "std": xf.std(axis=0),
        "count": np.array([count], dtype=np.int64),
    }
    quantiles = _histogram_quantiles(xf) if len(x) >= 2 else [stats["mean"].copy() for _ in QUANTILES]
    stats.update(zip(QUANTILE_KEYS, quantiles))
    return stats


def episode_stats(
    values: dict[str, np.ndarray], features: dict[str, Any]
) -> dict[str, dict[str, np.ndarray]]:
    """One episode's stats per feature, as LeRobot v3.0 computes them when it saves an episode.

    Args:
        values: feature name -> the episode's values, ``[T]`` or ``[T, d]`` (numeric / bool), or
            uint8 ``[T, H, W, 3]`` for ``video`` / ``image`` features.
        features: ``info.json`` features; stats follow its order, ``string`` features are skipped.

    Returns:
        feature -> ``{min, max, mean, std, count, q01, q10, q50, q90, q99}``. Numeric features:
        per component, shape ``[d]`` (``[1]`` for scalars), min/max in the column's dtype (float32,
        int64 or bool), the rest float64, ``count = [T]``. Images: per channel, shape ``[3, 1, 1]``,
        scaled to [0, 1], over the sampled frames (every frame below 100; frames larger than
        300 px are strided to about 150 px), ``count`` = number of sampled frames.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, ft in features.items():
        if ft.get("dtype") == "string" or name not in values:
            continue
        x = np.asarray(values[name])
        if ft.get("dtype") in ("video", "image"):
            frames = x[_sample_frame_indices(len(x))]
            h, w = frames.shape[1:3]
            if max(h, w) >= 300:
                step = int(w / 150) if w > h else int(h / 150)
                frames = frames[:, ::step, ::step]
            stats = _sample_stats(frames.reshape(-1, frames.shape[-1]), len(frames))
            out[name] = {
                k: v if k == "count" else (np.asarray(v, dtype=np.float64) / 255.0).reshape(-1, 1, 1)
                for k, v in stats.items()
            }
        else:
            out[name] = _sample_stats(x.reshape(len(x), -1), len(x))
    return out


# -- export --------------------------------------------------------------------------------------


def _fixed_list(values: np.ndarray) -> Any:
    import pyarrow as pa

    values = np.ascontiguousarray(values, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def _scalar_feature(dtype: str) -> dict[str, Any]:
    return {"dtype": dtype, "shape": [1], "names": None}


def _actions_digest(actions: np.ndarray) -> str:
    """SHA-1 of the float32 action bytes: ties a sidecar row to its episode's data."""
    return hashlib.sha1(np.ascontiguousarray(actions, dtype="<f4").tobytes()).hexdigest()


def _int_fps(fps: float) -> int:
    """LeRobot keeps ``fps`` as an int (``info.json``, video encoders); a non-integer rate is refused."""
    if not abs(fps - round(fps)) < 1e-9:
        raise DataError(
            f"fps {fps}: LeRobot datasets store an integer fps; pass an integer fps= to export_lerobot"
        )
    return round(fps)


def _features(spec: dict[str, Any], feature_of: dict[str, str], da: int, vcodec: str, pix_fmt: str, fps: int):
    """``info.json`` features, in the order of the data columns (cameras are video, not columns)."""
    features: dict[str, Any] = {}
    for key, s in spec.items():
        if key.startswith(PIXELS_PREFIX):
            h, w, c = s["shape"]
            features[feature_of[key]] = {
                "dtype": "video",
                "shape": [h, w, c],
                "names": ["height", "width", "channels"],
                "info": {
                    "video.height": h,
                    "video.width": w,
                    "video.codec": _CODEC_NAMES.get(vcodec, vcodec),
                    "video.pix_fmt": pix_fmt,
                    "video.is_depth_map": False,
                    "video.fps": fps,
                    "video.channels": c,
                    "has_audio": False,
                },
            }
        else:
            n = s["shape"][0]
            features[feature_of[key]] = {
                "dtype": "float32",
                "shape": [n],
                "names": [f"{key}_{i}" for i in range(n)],
            }
    features["action"] = {"dtype": "float32", "shape": [da], "names": [f"action_{i}" for i in range(da)]}
    features["next.reward"] = _scalar_feature("float32")
    features["next.done"] = _scalar_feature("bool")
    features["next.success"] = _scalar_feature("bool")
    features["timestamp"] = _scalar_feature("float32")
    for name in ("frame_index", "episode_index", "index", "task_index"):
        features[name] = _scalar_feature("int64")
    features["proposed_action"] = dict(features["action"])
    for name in ("next.terminated", "next.truncated", "is_demo", "is_intervention"):
        features[name] = _scalar_feature("bool")
    return features


def export_lerobot(
    store: EpisodeStore | str | Path,
    out_dir: str | Path,
    fps: float | None = None,
    *,
    vcodec: str = "libx264",
    pix_fmt: str = "yuv420p",
    crf: int = 23,
    gop: int = 2,
) -> Path:
    """Write ``store`` as a LeRobotDataset v3.0 folder ``out_dir`` (which must not exist yet).

    Episodes are read one at a time; parquet rows and video frames are streamed to disk. The
    folder is built under a temporary name and renamed when complete.

    Args:
        store: an :class:`EpisodeStore` or its folder.
        out_dir: the dataset folder to create.
        fps: frame rate written to ``info.json`` and the videos; default the store's ``fps``.
            Must be a whole number (LeRobot stores fps as an int).
        vcodec, pix_fmt, crf, gop: video encoder settings (PyAV/FFmpeg names). The default H.264
            yuv420p is lossy; ``vcodec="libx264rgb", pix_fmt="rgb24", crf=0`` is lossless.

    Returns:
        ``out_dir`` as a Path.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(store, EpisodeStore):
        store = EpisodeStore(store)
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise DataError(f"export target {out_dir} already exists")
    fps = fps if fps is not None else store.fps
    if fps is None or not fps > 0:
        raise DataError(f"store {store.root} records no fps; pass fps= to export_lerobot")
    fps = _int_fps(fps)
    spec = store.obs_spec
    if not spec or len(store) == 0:
        raise DataError(f"store {store.root} has no episodes to export")
    for key, s in spec.items():
        if not key.startswith(PIXELS_PREFIX) and len(s["shape"]) != 1:
            raise DataError(
                f"observation key {key!r}: only 1-D low-dim observations export, got {s['shape']}"
            )
    feature_of = {key: obs_key_to_feature(key) for key in spec}
    cameras = [k for k in spec if k.startswith(PIXELS_PREFIX)]
    lowdim = [k for k in spec if not k.startswith(PIXELS_PREFIX)]
    da = int(store.action_dim or 0)
    features = _features(spec, feature_of, da, vcodec, pix_fmt, fps)
    video_feats = [feature_of[k] for k in cameras]

    tmp = out_dir.with_name(f".{out_dir.name}.partial-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    writers: dict[str, _VideoWriter] = {}
    data_writer = None
    try:
        (tmp / "meta").mkdir(parents=True)
        data_path = tmp / DATA_PATH.format(chunk_index=0, file_index=0)
        data_path.parent.mkdir(parents=True)
        for key in cameras:
            h, w, _ = spec[key]["shape"]
            video_file = tmp / VIDEO_PATH.format(video_key=feature_of[key], chunk_index=0, file_index=0)
            writers[key] = _VideoWriter(video_file, fps, h, w, vcodec, pix_fmt, crf, gop)
        tasks: dict[str, int] = {}
        stats = _Stats()
        episode_columns: dict[str, list[Any]] = {}  # LeRobot's episodes table, column by column
        sidecar_rows: list[dict[str, Any]] = []
        total = 0
        for ep_index, rec in enumerate(store):
            T = rec.length
            task_index = tasks.setdefault(rec.task, len(tasks))
            success = np.zeros(T, dtype=np.bool_)
            success[-1] = rec.success
            values: dict[str, np.ndarray] = {feature_of[k]: rec.observations[k][:T] for k in spec}
            values.update(
                {
                    "action": rec.actions,
                    "next.reward": rec.rewards,
                    "next.done": rec.terminated | rec.truncated,
                    "next.success": success,
                    "timestamp": np.arange(T) / fps,  # float64 for the stats, as LeRobot's buffer
                    "frame_index": np.arange(T, dtype=np.int64),
                    "episode_index": np.full(T, ep_index, dtype=np.int64),
                    "index": np.arange(total, total + T, dtype=np.int64),
                    "task_index": np.full(T, task_index, dtype=np.int64),
                    "proposed_action": rec.proposed_actions,
                    "next.terminated": rec.terminated,
                    "next.truncated": rec.truncated,
                    "is_demo": rec.is_demo,
                    "is_intervention": rec.is_intervention,
                }
            )
            cols: dict[str, Any] = {}
            for name, ft in features.items():
                if ft["dtype"] == "video":
                    continue
                v = values[name]
                cols[name] = _fixed_list(v) if v.ndim == 2 else pa.array(np.asarray(v, dtype=ft["dtype"]))
            table = pa.table(cols)
            if data_writer is None:
                data_writer = pq.ParquetWriter(str(data_path), table.schema)
            data_writer.write_table(table)
            for key in lowdim:
                stats.add(feature_of[key], values[feature_of[key]], (0,), keep=True)
            stats.add("action", rec.actions, (0,), keep=True)
            stats.add("next.reward", rec.rewards[:, None], (0,), keep=True)

            row: dict[str, Any] = {
                "episode_index": ep_index,
                "tasks": [rec.task],
                "length": T,
                "data/chunk_index": 0,
                "data/file_index": 0,
                "dataset_from_index": total,
                "dataset_to_index": total + T,
            }
            for key in cameras:
                vkey = feature_of[key]
                frames = values[vkey]
                start = writers[key].n
                writers[key].write(frames)
                stats.add(vkey, frames.astype(np.float32) / 255.0, (0, 1, 2), keep=False, shape=(3, 1, 1))
                row[f"videos/{vkey}/chunk_index"] = 0
                row[f"videos/{vkey}/file_index"] = 0
                row[f"videos/{vkey}/from_timestamp"] = start / fps
                row[f"videos/{vkey}/to_timestamp"] = (start + T) / fps
            for name, feature_stats in episode_stats(values, features).items():
                for stat, value in feature_stats.items():
                    row[f"stats/{name}/{stat}"] = value.tolist()
            row["meta/episodes/chunk_index"] = 0
            row["meta/episodes/file_index"] = 0
            for name, value in row.items():
                episode_columns.setdefault(name, []).append(value)

            side: dict[str, Any] = {
                "episode_index": ep_index,
                "length": T,
                "actions_sha1": _actions_digest(rec.actions),
                "success": rec.success,
                "source": rec.source,
                "reward_source": rec.reward_source,
                "metadata": json.dumps(rec.metadata),
            }
            for key in spec:
                final = rec.observations[key][T]
                side[SIDECAR_FINAL_PREFIX + feature_of[key]] = final.tobytes() if key in cameras else final
            sidecar_rows.append(side)
            total += T
        assert data_writer is not None
        data_writer.close()
        data_writer = None
        for w in writers.values():
            w.close()
        writers = {}

        # From Python lists, as LeRobot builds it, so the arrow types are the ones it writes.
        ep_path = tmp / EPISODES_PATH.format(chunk_index=0, file_index=0)
        ep_path.parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pydict(episode_columns), str(ep_path))
        _write_sidecar(tmp / SIDECAR_PATH, sidecar_rows, [feature_of[k] for k in lowdim], video_feats)
        _write_tasks(tmp / "meta" / "tasks.parquet", tasks)

        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": None,
            "total_episodes": len(sidecar_rows),
            "total_frames": total,
            "total_tasks": len(tasks),
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 200,
            "fps": fps,
            "splits": {"train": f"0:{len(sidecar_rows)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if cameras else None,
            "features": features,
            "robot_rl": {
                "format_version": 2,
                "obs_keys": {feature_of[k]: k for k in spec},
                "env_id": store.env_id,
                "episodes": SIDECAR_PATH,
            },
        }
        frame_counts = {name: total for name in features}
        write_atomic_bytes(tmp / "meta" / "info.json", json.dumps(info, indent=4).encode())
        write_atomic_bytes(
            tmp / "meta" / "stats.json", json.dumps(stats.result(frame_counts), indent=4).encode()
        )
        os.replace(tmp, out_dir)
    except BaseException:
        if data_writer is not None:
            data_writer.close()
        for w in writers.values():
            with contextlib.suppress(Exception):
                w.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write_sidecar(path: Path, rows: list[dict[str, Any]], lowdim: list[str], video: list[str]) -> None:
    """``meta/robot_rl/episodes.parquet``: our per-episode fields that LeRobot has no column for."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, Any] = {
        "episode_index": pa.array([r["episode_index"] for r in rows], type=pa.int64()),
        "length": pa.array([r["length"] for r in rows], type=pa.int64()),
        "actions_sha1": pa.array([r["actions_sha1"] for r in rows], type=pa.string()),
        "success": pa.array([r["success"] for r in rows], type=pa.bool_()),
    }
    for name in ("source", "reward_source", "metadata"):
        columns[name] = pa.array([r[name] for r in rows], type=pa.string())
    for name in lowdim:
        finals = [r[SIDECAR_FINAL_PREFIX + name] for r in rows]
        columns[SIDECAR_FINAL_PREFIX + name] = pa.array(
            [np.asarray(f, dtype=np.float32) for f in finals], type=pa.list_(pa.float32())
        )
    for name in video:
        columns[SIDECAR_FINAL_PREFIX + name] = pa.array(
            [r[SIDECAR_FINAL_PREFIX + name] for r in rows], type=pa.binary()
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), str(path))


def _write_tasks(path: Path, tasks: dict[str, int]) -> None:
    """``tasks.parquet`` as LeRobot writes it from pandas: index ``task`` (str), column ``task_index``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": "task",
                "field_name": "task",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    table = pa.table(
        {
            "task_index": pa.array(list(tasks.values()), type=pa.int64()),
            "task": pa.array(list(tasks), type=pa.string()),
        }
    ).replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    pq.write_table(table, str(path))


# -- import --------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise DataError(f"not a LeRobot dataset: missing {path}") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"corrupt file {path}: {err}") from err


def _read_parquet(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(str(path))
    except FileNotFoundError as err:
        raise DataError(f"LeRobot dataset is missing {path}") from err
    except (OSError, pa.ArrowException) as err:
        raise DataError(f"corrupt parquet file {path}: {err}") from err


def _to_numpy(table: Any, name: str, where: Path) -> np.ndarray:
    """A column as ``[n]`` (scalars) or ``[n, d]`` (lists / fixed-size lists) numpy array."""
    import pyarrow as pa

    if name not in table.column_names:
        raise DataError(f"{where}: missing column {name!r}")
    col = table.column(name).combine_chunks()
    if (
        pa.types.is_list(col.type)
        or pa.types.is_fixed_size_list(col.type)
        or pa.types.is_large_list(col.type)
    ):
        values = col.flatten().to_numpy(zero_copy_only=False)
        return values.reshape(len(col), -1) if len(col) else values.reshape(0, 0)
    return col.to_numpy(zero_copy_only=False)


def _read_tasks(path: Path) -> dict[int, str]:
    table = _read_parquet(path)
    names = table.column_names
    text_col = "task" if "task" in names else next((n for n in names if n != "task_index"), None)
    if text_col is None or "task_index" not in names:
        raise DataError(f"{path}: expected columns 'task' (or a pandas index) and 'task_index', got {names}")
    return dict(zip(table.column("task_index").to_pylist(), table.column(text_col).to_pylist()))


def _read_episode_rows(in_dir: Path) -> list[dict[str, Any]]:
    """All rows of ``meta/episodes/chunk-*/file-*.parquet``, sorted by episode, without the
    ``stats/*`` columns. Files may come from different writers (ours, LeRobot's appends, the
    earlier layout with ``robot_rl/*`` columns): each is read with its own columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    episode_files = sorted((in_dir / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not episode_files:
        raise DataError(f"LeRobot dataset {in_dir} has no meta/episodes/chunk-*/file-*.parquet")
    rows: list[dict[str, Any]] = []
    for path in episode_files:
        try:
            names = pq.read_schema(str(path)).names
            table = pq.read_table(str(path), columns=[n for n in names if not n.startswith("stats/")])
        except (OSError, pa.ArrowException) as err:
            raise DataError(f"corrupt parquet file {path}: {err}") from err
        for row in table.to_pylist():
            if "episode_index" not in row:
                raise DataError(f"{path}: missing column 'episode_index'")
            rows.append(row)
    rows.sort(key=lambda r: r["episode_index"])
    return rows


def _read_sidecar(in_dir: Path) -> dict[int, dict[str, Any]]:
    """``meta/robot_rl/episodes.parquet`` by episode index (empty when the file is absent)."""
    path = in_dir / SIDECAR_PATH
    if not path.exists():
        return {}
    out: dict[int, dict[str, Any]] = {}
    for row in _read_parquet(path).to_pylist():
        out[int(row["episode_index"])] = {
            "length": row.get("length"),
            "actions_sha1": row.get("actions_sha1"),
            "success": row.get("success"),
            "source": row.get("source"),
            "reward_source": row.get("reward_source"),
            "metadata": row.get("metadata"),
            "final": {
                k[len(SIDECAR_FINAL_PREFIX) :]: v
                for k, v in row.items()
                if k.startswith(SIDECAR_FINAL_PREFIX)
            },
        }
    return out


def _extras_from_episode_row(row: dict[str, Any]) -> dict[str, Any] | None:
    """Our per-episode fields from ``robot_rl/*`` columns of the episodes table (earlier layout)."""
    if not any(k.startswith("robot_rl/") for k in row):
        return None
    return {
        "success": row.get("robot_rl/success"),
        "source": row.get("robot_rl/source"),
        "reward_source": row.get("robot_rl/reward_source"),
        "metadata": row.get("robot_rl/metadata"),
        "final": {k[len(FINAL_PREFIX) :]: v for k, v in row.items() if k.startswith(FINAL_PREFIX)},
    }


def import_lerobot(
    in_dir: str | Path,
    store_root: str | Path,
    *,
    source: str = "import:lerobot",
    reward_source: str | None = None,
    assume_success: bool = True,
) -> EpisodeStore:
    """Read a LeRobotDataset v3.0 folder into an episode store (created, or appended to).

    Episodes are converted one at a time (data files are cached one at a time, videos are
    decoded front to back). What this project wrote (the ``proposed_action``, ``is_demo``,
    ``is_intervention``, ``next.terminated`` / ``next.truncated`` columns, the sidecar
    ``meta/robot_rl/episodes.parquet`` or, from earlier exports, ``robot_rl/*`` columns of the
    episodes table) is restored exactly; episodes without it (datasets from elsewhere, episodes
    LeRobot appended) get the defaults documented in ``docs/data.md``. The episodes table may
    span several files written by different writers.

    Args:
        in_dir: the dataset folder (containing ``meta/info.json``).
        store_root: the episode store folder.
        source: ``source`` of episodes that do not record one.
        reward_source: ``reward_source`` of episodes that do not record one (default: ``"sim"``
            when the dataset has ``next.reward``, else ``"none"``).
        assume_success: ``success`` of episodes that record none (no sidecar row and no
            ``next.success`` column, whose ``any()`` is used where present).

    Returns:
        The :class:`EpisodeStore`.
    """
    in_dir = Path(in_dir)
    info = _read_json(in_dir / "meta" / "info.json")
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3"):
        raise DataError(f"{in_dir / 'meta' / 'info.json'}: codebase_version {version!r} is not v3.x")
    fps = float(info["fps"])
    features: dict[str, Any] = info.get("features", {})
    ours = info.get("robot_rl", {})
    obs_keys: dict[str, str] = ours.get("obs_keys") or {}
    if not obs_keys:
        for name, ft in features.items():
            if not name.startswith("observation."):
                continue
            if ft.get("dtype") == "image":
                raise DataError(f"feature {name!r}: dtype 'image' (frames inside parquet) is not supported")
            obs_keys[name] = _feature_to_obs_key(name, ft)
    if "action" not in features:
        raise DataError(f"{in_dir / 'meta' / 'info.json'}: no 'action' feature")
    video_feats = [n for n in obs_keys if features.get(n, {}).get("dtype") == "video"]

    rows = _read_episode_rows(in_dir)
    sidecar = _read_sidecar(in_dir)
    tasks = _read_tasks(in_dir / "meta" / "tasks.parquet")

    store = EpisodeStore(store_root, create=True, fps=fps, env_id=ours.get("env_id"))
    cursors = {name: _VideoCursor() for name in video_feats}
    cached_path: Path | None = None
    table: Any = None
    ep_column: np.ndarray | None = None
    try:
        for row in rows:
            ep = int(row["episode_index"])
            data_file = in_dir / info["data_path"].format(
                chunk_index=int(row["data/chunk_index"]), file_index=int(row["data/file_index"])
            )
            if data_file != cached_path:
                table = _read_parquet(data_file)
                ep_column = _to_numpy(table, "episode_index", data_file).astype(np.int64)
                cached_path = data_file
            assert ep_column is not None
            if np.all(ep_column[1:] >= ep_column[:-1]):
                lo, hi = np.searchsorted(ep_column, [ep, ep + 1])
                frames = table.slice(lo, hi - lo)
            else:
                frames = table.take(np.flatnonzero(ep_column == ep))
            if "frame_index" in frames.column_names:
                frames = frames.take(np.argsort(_to_numpy(frames, "frame_index", data_file), kind="stable"))
            T = frames.num_rows
            if T == 0:
                raise DataError(f"{data_file}: no rows for episode {ep}")
            if "length" in row and int(row["length"]) != T:
                raise DataError(
                    f"{data_file}: episode {ep} has {T} rows, episodes table says {row['length']}"
                )

            def col(name: str, default: Any = None, *, _frames: Any = frames, _file: Path = data_file) -> Any:
                if name not in _frames.column_names:
                    return default
                arr = _to_numpy(_frames, name, _file)
                return arr[:, 0] if arr.ndim == 2 and arr.shape[1] == 1 else arr

            actions = col("action")
            if actions is None:
                raise DataError(f"{data_file}: missing column 'action'")
            extras = sidecar.get(ep)
            if extras is not None and (
                extras["length"] != T or extras["actions_sha1"] != _actions_digest(actions.astype(np.float32))
            ):
                raise DataError(
                    f"{in_dir / SIDECAR_PATH}: the row of episode {ep} does not match the dataset's "
                    "episode (length or actions differ); the dataset was edited without it - delete "
                    "meta/robot_rl/ to import with the defaults for datasets made elsewhere"
                )
            if extras is None:
                extras = _extras_from_episode_row(row)
            finals = extras["final"] if extras is not None else {}

            observations: dict[str, np.ndarray] = {}
            final_missing = False
            for name, key in obs_keys.items():
                if name in video_feats:
                    start = round(float(row[f"videos/{name}/from_timestamp"]) * fps)
                    video_file = in_dir / info["video_path"].format(
                        video_key=name,
                        chunk_index=int(row[f"videos/{name}/chunk_index"]),
                        file_index=int(row[f"videos/{name}/file_index"]),
                    )
                    values = cursors[name].read(video_file, start, T)
                else:
                    values = _to_numpy(frames, name, data_file).astype(np.float32)
                final = finals.get(name)
                if final is None:
                    final_missing = True
                    last = values[-1]
                elif name in video_feats:
                    last = np.frombuffer(final, dtype=np.uint8).reshape(values.shape[1:])
                else:
                    last = np.asarray(final, dtype=np.float32)
                observations[key] = np.concatenate([values, last[None]])

            done = col("next.done", np.zeros(T, dtype=np.bool_)).astype(np.bool_)
            rewards = col("next.reward")
            interventions = col("is_intervention", col("complementary_info.is_intervention"))
            task = row["tasks"][0] if row.get("tasks") else tasks.get(int(col("task_index", [0])[0]), "")
            extra = extras or {}
            metadata = extra.get("metadata")
            if metadata is not None:
                metadata = json.loads(metadata)
            else:
                metadata = {"lerobot_episode_index": ep}
                if final_missing:
                    metadata["final_observation"] = "duplicated"
            success = extra.get("success")
            if success is None and "next.success" in frames.column_names:
                success = bool(col("next.success").astype(np.bool_).any())
            try:
                record = EpisodeRecord(
                    observations=observations,
                    actions=actions,
                    rewards=rewards if rewards is not None else np.zeros(T, dtype=np.float32),
                    terminated=col("next.terminated", done),
                    truncated=col("next.truncated", np.zeros(T, dtype=np.bool_)),
                    proposed_actions=col("proposed_action"),
                    is_demo=col("is_demo", np.ones(T, dtype=np.bool_)),
                    is_intervention=interventions,
                    reward_source=extra.get("reward_source")
                    or reward_source
                    or ("sim" if rewards is not None else "none"),
                    source=extra.get("source") or source,
                    task=task,
                    success=bool(assume_success if success is None else success),
                    metadata=metadata,
                )
                store.append(record)
            except DataError as err:
                raise DataError(f"{in_dir}: episode {ep}: {err}") from err
    finally:
        for cursor in cursors.values():
            cursor.close()
    return store
