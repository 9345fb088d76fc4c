"""LeRobot v3 episodes table: LeRobot's columns and per-episode stats, LeRobot-style appends to an
export, the sidecar of our per-episode fields, and imports of the earlier layout (issue 20)."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from robot_rl.core.errors import DataError
from robot_rl.data.episode_store import EpisodeRecord, EpisodeStore
from robot_rl.data.lerobot import export_lerobot, import_lerobot
from tests.unit.test_episode_store import assert_records_equal
from tests.unit.test_interop import LENGTHS, LOSSLESS, make_store, smooth_frames

pytestmark = pytest.mark.unit


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path / "store")


STATS = ("min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99")
EPISODES_FILE = "meta/episodes/chunk-{c:03d}/file-{f:03d}.parquet"


def episodes_file(root: Path, file_index: int) -> Path:
    return root / EPISODES_FILE.format(c=0, f=file_index)


def read_episodes_checked(root: Path) -> list[dict]:
    """Read the episodes table as LeRobot's loader does, with its strictness: every file must have
    the first file's columns (else ``CastError: column names don't match``), and here also the
    same arrow schema (names, order and types)."""
    import pyarrow.parquet as pq

    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    assert files
    first = pq.read_schema(files[0]).remove_metadata()
    rows: list[dict] = []
    for path in files:
        schema = pq.read_schema(path).remove_metadata()
        if set(schema.names) != set(first.names):
            raise AssertionError(
                f"CastError: column names don't match: {path.name} lacks "
                f"{sorted(set(first.names) - set(schema.names))[:5]}, has extra "
                f"{sorted(set(schema.names) - set(first.names))[:5]}"
            )
        if not schema.equals(first):
            diff = [(a, b) for a, b in zip(first, schema) if not a.equals(b)]
            raise AssertionError(f"{path.name}: arrow schema differs from {files[0].name}: {diff[:3]}")
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def lerobot_episode_stats(values: dict[str, np.ndarray], features: dict) -> dict:
    """Per-episode stats with the shapes and numpy dtypes LeRobot 0.4.4's ``compute_episode_stats``
    gives (min/max keep the column's dtype, the rest float; images per channel ``[3, 1, 1]`` in
    [0, 1]). The values only need to be plausible: the test checks types and the reload."""
    out = {}
    for name, ft in features.items():
        x = values[name]
        if ft["dtype"] == "video":
            px = x.reshape(-1, 3)
            s = {"min": px.min(0), "max": px.max(0), "mean": px.mean(0), "std": px.std(0)}
            s = {k: (v / 255.0).reshape(3, 1, 1) for k, v in s.items()}
            s["count"] = np.array([len(x)])
            for q in (0.01, 0.10, 0.50, 0.90, 0.99):
                s[f"q{int(q * 100):02d}"] = (np.quantile(px, q, axis=0) / 255.0).reshape(3, 1, 1)
        else:
            x = x.reshape(len(x), -1)
            s = {
                "min": x.min(0),
                "max": x.max(0),
                "mean": x.mean(0),
                "std": x.std(0),
                "count": np.array([len(x)]),
            }
            for q in (0.01, 0.10, 0.50, 0.90, 0.99):
                s[f"q{int(q * 100):02d}"] = np.quantile(x.astype(np.float64), q, axis=0)
        out[name] = s
    return out


def lerobot_append(root: Path, task: str, state: np.ndarray, frames: np.ndarray, rng) -> int:
    """Append one episode the way LeRobot 0.4.4 does when it resumes recording on a dataset
    (``add_frame`` / ``save_episode``): the data, the video and the episodes row each go to the
    next file (``file-001``), the row is built from a dict of Python lists (``.tolist()`` of the
    numpy stats) with ``pa.Table.from_pydict`` in LeRobot's column order, and ``info.json`` gets
    the new totals (its other keys kept). Every feature of ``info.json`` is given, as
    ``validate_frame`` demands. Returns the new episode's index."""
    import av
    import pyarrow as pa
    import pyarrow.parquet as pq

    info = json.loads((root / "meta" / "info.json").read_text())
    # int(): LeRobot's encoder itself fails on the float fps of earlier exports; rounded here so
    # that the column-set break of such exports can be shown.
    features, fps = info["features"], int(info["fps"])
    prev = read_episodes_checked(root)[-1]
    ep, T, start = info["total_episodes"], len(state), prev["dataset_to_index"]
    tasks = pq.read_table(root / "meta" / "tasks.parquet")
    task_indices = dict(zip(tasks.column("task").to_pylist(), tasks.column("task_index").to_pylist()))
    task_index = task_indices[task]

    values: dict[str, np.ndarray] = {}
    for name, ft in features.items():
        if name == "observation.state":
            values[name] = state.astype(np.float32)
        elif ft["dtype"] == "video":
            values[name] = frames
        elif name == "timestamp":
            values[name] = np.array([t / fps for t in range(T)])  # Python floats in LeRobot's buffer
        elif name == "frame_index":
            values[name] = np.arange(T)
        elif name == "episode_index":
            values[name] = np.full(T, ep)
        elif name == "index":
            values[name] = np.arange(start, start + T)
        elif name == "task_index":
            values[name] = np.full(T, task_index)
        elif ft["dtype"] == "bool":
            values[name] = np.stack([np.array([t == T - 1]) for t in range(T)])
        else:
            values[name] = rng.normal(size=(T, *ft["shape"])).astype(ft["dtype"])

    data = {}
    for name, ft in features.items():
        if ft["dtype"] == "video":
            continue
        v = values[name]
        if list(ft["shape"]) == [1]:
            data[name] = pa.array(v.reshape(-1).astype(ft["dtype"]))
        else:
            data[name] = pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), ft["shape"][0])
    data_file = root / info["data_path"].format(chunk_index=0, file_index=1)
    pq.write_table(pa.table(data), data_file)

    row = {"episode_index": ep, "tasks": [task], "length": T}
    row.update({"data/chunk_index": 0, "data/file_index": 1, "dataset_from_index": start})
    row["dataset_to_index"] = start + T
    for name, ft in features.items():
        if ft["dtype"] != "video":
            continue
        video = root / info["video_path"].format(video_key=name, chunk_index=0, file_index=1)
        video.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(video), mode="w") as container:
            stream = container.add_stream("libx264rgb", rate=Fraction(fps))
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
            stream.options = {"crf": "0", "g": "2"}
            for t, frame in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
                vf.pts, vf.time_base = t, Fraction(1, fps)
                container.mux(stream.encode(vf))
            container.mux(stream.encode())
        row.update({f"videos/{name}/chunk_index": 0, f"videos/{name}/file_index": 1})
        row.update({f"videos/{name}/from_timestamp": 0.0, f"videos/{name}/to_timestamp": T / fps})
    for name, stats in lerobot_episode_stats(values, features).items():
        for key, value in stats.items():
            row[f"stats/{name}/{key}"] = value.tolist()
    row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 1})
    pq.write_table(pa.Table.from_pydict({k: [v] for k, v in row.items()}), episodes_file(root, 1))

    info["total_episodes"] += 1
    info["total_frames"] += T
    info["total_tasks"] = len(task_indices)
    info["splits"] = {"train": f"0:{info['total_episodes']}"}
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    return ep


def to_earlier_layout(out: Path) -> None:
    """Rewrite a fresh export as the earlier exporter wrote it: our per-episode fields as
    ``robot_rl/*`` columns of the episodes table (no ``stats/*``), no sidecar, no ``next.success``,
    a float fps and the format_version 1 ``robot_rl`` block."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    side = pq.read_table(out / "meta" / "robot_rl" / "episodes.parquet")
    episodes = pq.read_table(episodes_file(out, 0))
    episodes = episodes.drop([c for c in episodes.column_names if c.startswith("stats/")])
    for name in side.column_names:
        if name.startswith("final/"):
            episodes = episodes.append_column("robot_rl/" + name, side.column(name))
    for name in ("success", "source", "reward_source", "metadata"):
        episodes = episodes.append_column("robot_rl/" + name, side.column(name))
    pq.write_table(episodes, episodes_file(out, 0))
    shutil.rmtree(out / "meta" / "robot_rl")
    data_file = out / "data" / "chunk-000" / "file-000.parquet"
    pq.write_table(pq.read_table(data_file).drop(["next.success"]), data_file)
    info = json.loads((out / "meta" / "info.json").read_text())
    del info["features"]["next.success"]
    info["fps"] = float(info["fps"])
    info["robot_rl"] = {
        "format_version": 1,
        "obs_keys": info["robot_rl"]["obs_keys"],
        "env_id": info["robot_rl"]["env_id"],
        "final_observation": "episodes table columns robot_rl/final/<feature>",
    }
    (out / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    assert pa.types.is_list(episodes.schema.field("robot_rl/final/observation.state").type)


# -- the episodes table is LeRobot's ------------------------------------------------------------


def test_episodes_table_has_exactly_lerobots_columns_and_fps_is_an_int(store, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = export_lerobot(store, tmp_path / "lr", **LOSSLESS)
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["fps"] == 10 and isinstance(info["fps"], int)
    assert info["features"]["observation.images.front"]["info"]["video.fps"] == 10
    assert isinstance(info["features"]["observation.images.front"]["info"]["video.fps"], int)
    schema = pq.read_schema(episodes_file(out, 0))
    video = "videos/observation.images.front/"
    expected = ["episode_index", "tasks", "length", "data/chunk_index", "data/file_index"]
    expected += ["dataset_from_index", "dataset_to_index"]
    expected += [video + k for k in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")]
    expected += [f"stats/{f}/{s}" for f in info["features"] for s in STATS]
    expected += ["meta/episodes/chunk_index", "meta/episodes/file_index"]
    assert schema.names == expected
    types = {f.name: f.type for f in schema}
    assert types["tasks"] == pa.list_(pa.string())
    assert types[video + "from_timestamp"] == pa.float64()
    assert types["stats/observation.state/mean"] == pa.list_(pa.float64())
    assert types["stats/observation.state/min"] == pa.list_(pa.float64())  # float32 values
    assert types["stats/frame_index/min"] == pa.list_(pa.int64())
    assert types["stats/next.done/max"] == pa.list_(pa.bool_())
    assert types["stats/next.done/mean"] == pa.list_(pa.float64())
    assert types["stats/action/count"] == pa.list_(pa.int64())
    assert types["stats/observation.images.front/q50"] == pa.list_(pa.list_(pa.list_(pa.float64())))
    side = pq.read_table(out / "meta" / "robot_rl" / "episodes.parquet").to_pylist()
    assert [r["length"] for r in side] == list(LENGTHS)
    assert [r["success"] for r in side] == [True, False, True]
    assert info["robot_rl"]["episodes"] == "meta/robot_rl/episodes.parquet"
    data = pq.read_table(out / "data" / "chunk-000" / "file-000.parquet")
    assert data.column("next.success").to_pylist()[:5] == [False] * 4 + [True]
    assert data.column("next.success").to_pylist()[5:13] == [False] * 8


def test_per_episode_stats_hand_worked(tmp_path):
    """One 4-step episode: state columns [0, 1, 2, 3] and a constant 10, a 2x2 camera whose red
    channel is 0, 50, 100, 150 over the frames (green 255, blue 0), fps 10."""
    import pyarrow.parquet as pq

    T = 4
    state = np.array([[0, 10], [1, 10], [2, 10], [3, 10], [9, 9]], dtype=np.float32)
    frames = np.zeros((T + 1, 2, 2, 3), dtype=np.uint8)
    frames[:, :, :, 0] = (np.arange(T + 1) * 50)[:, None, None]
    frames[:, :, :, 1] = 255
    s = EpisodeStore(tmp_path / "s", create=True, fps=10)
    s.append(
        EpisodeRecord(
            observations={"state": state, "pixels/cam": frames},
            actions=np.ones((T, 2)),
            rewards=np.zeros(T),
            terminated=np.array([0, 0, 0, 1]),
            truncated=np.zeros(T, dtype=bool),
            is_demo=np.ones(T, dtype=bool),
            is_intervention=np.zeros(T, dtype=bool),
            task="t",
            success=True,
        )
    )
    out = export_lerobot(s, tmp_path / "lr", vcodec="libx264rgb", pix_fmt="rgb24", crf=0)
    (row,) = pq.read_table(episodes_file(out, 0)).to_pylist()

    def stat(feature, name):
        return row[f"stats/{feature}/{name}"]

    # observation.state: per column over the 4 frames (the final observation is not a frame).
    assert stat("observation.state", "min") == [0.0, 10.0]
    assert stat("observation.state", "max") == [3.0, 10.0]
    assert stat("observation.state", "mean") == [1.5, 10.0]
    np.testing.assert_allclose(stat("observation.state", "std"), [np.sqrt(1.25), 0.0])  # population
    assert stat("observation.state", "count") == [4]
    # Quantiles as LeRobot estimates them: 5000 bins over [0 - 1e-10, 3 + 1e-10] of width w;
    # the values 0, 1, 2, 3 fall in bins 0, 1666, 3333, 4999. q01 (target 0.04) and q10 (0.4)
    # are reached in bin 0 -> its left edge; q50 (target 2) in bin 1666 with 1 value before
    # and 1 inside -> (2 - 1) / 1 of the bin -> edge 1667; q90 (3.6) and q99 (3.96) in bin
    # 4999 with 3 before -> 0.6 and 0.96 of it. The constant column gives 10 (+- 1e-10).
    w = (3 + 2e-10) / 5000
    expected = {"q01": -1e-10, "q10": -1e-10, "q50": -1e-10 + 1667 * w}
    expected.update({"q90": -1e-10 + 4999.6 * w, "q99": -1e-10 + 4999.96 * w})
    for q, v in expected.items():
        np.testing.assert_allclose(stat("observation.state", q), [v, 10.0], rtol=0, atol=1e-9)
    assert abs(expected["q50"] - 1.0002) < 1e-6
    # Scalars are [1]-lists; int64 and bool columns keep their type in min/max.
    assert stat("timestamp", "min") == [0.0] and stat("timestamp", "max") == [pytest.approx(0.3)]
    assert stat("timestamp", "mean") == [pytest.approx(0.15)]
    assert stat("frame_index", "min") == [0] and stat("frame_index", "max") == [3]
    assert stat("next.done", "min") == [False] and stat("next.done", "max") == [True]
    assert stat("next.done", "mean") == [0.25]
    np.testing.assert_allclose(stat("next.done", "std"), [np.sqrt(0.25 * 0.75)])
    assert stat("next.success", "mean") == [0.25]  # success is marked on the last step
    # Camera: per channel over every pixel of the 4 frames, scaled to [0, 1], shape [3, 1, 1];
    # count is the number of frames sampled (all of them below 100).
    assert stat("observation.images.cam", "min") == [[[0.0]], [[1.0]], [[0.0]]]
    np.testing.assert_allclose(stat("observation.images.cam", "max"), [[[150 / 255]], [[1.0]], [[0.0]]])
    np.testing.assert_allclose(stat("observation.images.cam", "mean"), [[[75 / 255]], [[1.0]], [[0.0]]])
    red_std = np.sqrt((75**2 + 25**2 + 25**2 + 75**2) / 4) / 255
    np.testing.assert_allclose(
        stat("observation.images.cam", "std"), [[[red_std]], [[0.0]], [[0.0]]], atol=1e-12
    )
    assert stat("observation.images.cam", "count") == [4]


# -- appends by LeRobot --------------------------------------------------------------------------


def test_lerobot_style_append_reloads_in_both_readers(store, tmp_path):
    out = export_lerobot(store, tmp_path / "lr", **LOSSLESS)
    rng = np.random.default_rng(1)
    state = rng.normal(size=(4, 3)).astype(np.float32)
    frames = smooth_frames(3, 4)
    ep = lerobot_append(out, "stack", state, frames[:4], rng)
    assert ep == 3

    rows = read_episodes_checked(out)  # LeRobot's loader would accept the table
    assert [r["episode_index"] for r in rows] == [0, 1, 2, 3]
    assert [r["length"] for r in rows] == [*LENGTHS, 4]

    back = import_lerobot(out, tmp_path / "back")
    assert len(back) == 4 and back.fps == 10.0
    for a, b in zip(store, back):
        assert_records_equal(a, b)
    new = back[3]
    np.testing.assert_array_equal(new.observations["state"][:4], state)
    np.testing.assert_array_equal(new.observations["state"][4], state[3])
    np.testing.assert_array_equal(new.observations["pixels/front"][:4], frames[:4])
    assert new.task == "stack" and new.terminated.tolist() == [False] * 3 + [True]
    assert new.success is True  # from next.success (the appended episode set it on its last step)
    assert new.metadata == {"lerobot_episode_index": 3, "final_observation": "duplicated"}
    assert (new.source, new.reward_source) == ("import:lerobot", "sim")


def test_earlier_layout_fails_the_check_after_an_append_but_still_imports(store, tmp_path):
    """The break of issue 20 (an export of the earlier layout plus a LeRobot append has two
    episodes files with different columns), and that our importer reads such mixed tables."""
    out = export_lerobot(store, tmp_path / "lr", **LOSSLESS)
    to_earlier_layout(out)
    back = import_lerobot(out, tmp_path / "back")  # earlier exports import exactly
    for a, b in zip(store, back):
        assert_records_equal(a, b)

    rng = np.random.default_rng(1)
    lerobot_append(out, "stack", rng.normal(size=(4, 3)), smooth_frames(3, 4)[:4], rng)
    with pytest.raises(AssertionError, match="column names don't match"):
        read_episodes_checked(out)
    back = import_lerobot(out, tmp_path / "back2")
    assert len(back) == 4
    for a, b in zip(store, back):
        assert_records_equal(a, b)
    assert back[3].metadata["final_observation"] == "duplicated"


# -- the sidecar, fps, next.success ----------------------------------------------------------------


def test_stale_sidecar_is_an_error_and_removing_it_gives_the_defaults(store, tmp_path):
    import pyarrow.parquet as pq

    out = export_lerobot(store, tmp_path / "lr", **LOSSLESS)
    side_file = out / "meta" / "robot_rl" / "episodes.parquet"
    side = pq.read_table(side_file)
    shuffled = side.take([1, 0, 2]).set_column(0, "episode_index", side.column("episode_index"))
    pq.write_table(shuffled, side_file)  # rows no longer describe their episodes
    with pytest.raises(DataError, match="episodes.parquet.*episode 0 does not match"):
        import_lerobot(out, tmp_path / "s1")
    shutil.rmtree(out / "meta" / "robot_rl")
    back = import_lerobot(out, tmp_path / "s2")
    assert [b.success for b in back] == [True, False, True]  # from next.success
    assert all(b.metadata["final_observation"] == "duplicated" for b in back)


def test_fps_must_be_a_whole_number(store, tmp_path):
    with pytest.raises(DataError, match="integer fps"):
        export_lerobot(store, tmp_path / "lr", fps=12.5)
    assert not (tmp_path / "lr").exists()
    out = export_lerobot(store, tmp_path / "lr2", fps=20.0, **LOSSLESS)
    assert json.loads((out / "meta" / "info.json").read_text())["fps"] == 20
