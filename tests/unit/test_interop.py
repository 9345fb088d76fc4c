"""LeRobotDataset v3 and robomimic HDF5 export/import round trips on small generated stores."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from robot_rl.core.errors import DataError
from robot_rl.data.episode_store import EpisodeRecord, EpisodeStore
from robot_rl.data.lerobot import export_lerobot, import_lerobot
from robot_rl.data.robomimic import export_robomimic, import_robomimic
from tests.unit.test_episode_store import assert_records_equal

pytestmark = pytest.mark.unit

LENGTHS = (5, 8, 3)
LOSSLESS = {"vcodec": "libx264rgb", "pix_fmt": "rgb24", "crf": 0}


def smooth_frames(n: int, episode: int) -> np.ndarray:
    """Distinct, smooth 16x16 frames (video codecs keep these close): a ramp shifted per step."""
    yy, xx = np.mgrid[0:16, 0:16]
    frames = [
        np.stack([(xx * 8 + t * 12) % 256, yy * 8 + episode * 20, np.full_like(xx, 60 + 40 * episode)], -1)
        for t in range(n + 1)
    ]
    return np.stack(frames).astype(np.uint8)


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path / "store")


def make_store(root) -> EpisodeStore:
    """Three episodes (lengths ``LENGTHS``) with state, a 16x16 camera and every per-step field."""
    rng = np.random.default_rng(0)
    s = EpisodeStore(root, create=True, fps=10.0, env_id="robot_rl/Lift-v0")
    for i, T in enumerate(LENGTHS):
        s.append(
            EpisodeRecord(
                observations={"state": rng.normal(size=(T + 1, 3)), "pixels/front": smooth_frames(T, i)},
                actions=rng.normal(size=(T, 2)),
                proposed_actions=rng.normal(size=(T, 2)),
                rewards=rng.normal(size=T),
                terminated=np.eye(T, dtype=bool)[-1] if i != 1 else np.zeros(T, dtype=bool),
                truncated=np.eye(T, dtype=bool)[-1] if i == 1 else np.zeros(T, dtype=bool),
                is_demo=np.full(T, i == 0),
                is_intervention=rng.random(T) < 0.4,
                reward_source=["sim", "vlm", "human"][i],
                source=["scripted_expert", "policy", "teleop"][i],
                task=["lift the cube", "stack", "lift the cube"][i],
                success=i != 1,
                metadata={"seed": i, "bursts": [[0, 1]] if i else []},
            )
        )
    return s


def test_lerobot_lossless_round_trip_is_exact(store, tmp_path):
    out = export_lerobot(store, tmp_path / "lr", **LOSSLESS)
    back = import_lerobot(out, tmp_path / "back")
    assert len(back) == 3 and back.fps == 10.0 and back.env_id == "robot_rl/Lift-v0"
    for a, b in zip(store, back):
        assert_records_equal(a, b)


def test_lerobot_default_codec_is_lossy_but_keeps_frame_count_and_order(store, tmp_path):
    out = export_lerobot(store, tmp_path / "lr")
    back = import_lerobot(out, tmp_path / "back")
    for a, b in zip(store, back):
        np.testing.assert_array_equal(a.observations["state"], b.observations["state"])
        np.testing.assert_array_equal(a.actions, b.actions)
        orig = a.observations["pixels/front"].astype(np.float32)
        got = b.observations["pixels/front"].astype(np.float32)
        assert got.shape == orig.shape
        assert np.abs(orig - got).mean() < 6.0
        np.testing.assert_array_equal(orig[-1], got[-1])  # the final frame travels losslessly
        dist = np.abs(got[:, None] - orig[None]).mean(axis=(2, 3, 4))  # [decoded, original]
        np.testing.assert_array_equal(dist.argmin(axis=1), np.arange(len(orig)))


def test_lerobot_v3_layout(store, tmp_path):
    import pyarrow.parquet as pq

    out = export_lerobot(store, tmp_path / "lr", **LOSSLESS)
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["fps"] == 10.0
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, 16, 2)
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    feats = info["features"]
    assert feats["observation.state"]["shape"] == [3] and feats["observation.state"]["dtype"] == "float32"
    assert feats["observation.images.front"]["dtype"] == "video"
    assert feats["observation.images.front"]["shape"] == [16, 16, 3]
    assert feats["action"]["shape"] == [2]
    for name in (
        "timestamp",
        "frame_index",
        "episode_index",
        "index",
        "task_index",
        "next.reward",
        "next.done",
    ):
        assert name in feats
    data = pq.read_table(out / "data" / "chunk-000" / "file-000.parquet")
    assert data.num_rows == 16
    assert data.column("index").to_pylist() == list(range(16))
    assert data.column("frame_index").to_pylist()[:6] == [0, 1, 2, 3, 4, 0]
    np.testing.assert_allclose(data.column("timestamp").to_numpy()[5:7], [0.0, 0.1], rtol=1e-6)
    assert data.column("next.done").to_pylist()[:5] == [False] * 4 + [True]
    for extra in ("proposed_action", "is_demo", "is_intervention", "next.terminated", "next.truncated"):
        assert extra in data.column_names
    episodes = pq.read_table(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    assert [e["length"] for e in episodes] == list(LENGTHS)
    assert [(e["dataset_from_index"], e["dataset_to_index"]) for e in episodes] == [(0, 5), (5, 13), (13, 16)]
    spans = [
        (
            e["videos/observation.images.front/from_timestamp"],
            e["videos/observation.images.front/to_timestamp"],
        )
        for e in episodes
    ]
    np.testing.assert_allclose(spans, [(0.0, 0.5), (0.5, 1.3), (1.3, 1.6)])
    assert episodes[1]["tasks"] == ["stack"]
    tasks = pq.read_table(out / "meta" / "tasks.parquet")
    assert dict(zip(tasks.column("task").to_pylist(), tasks.column("task_index").to_pylist())) == {
        "lift the cube": 0,
        "stack": 1,
    }
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]
    stats = json.loads((out / "meta" / "stats.json").read_text())
    assert set(stats["action"]) >= {"min", "max", "mean", "std", "count", "q01", "q99"}
    assert np.shape(stats["observation.images.front"]["mean"]) == (3, 1, 1)
    actions = np.concatenate([e.actions for e in store])
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(0), rtol=1e-5)
    video = out / "videos" / "observation.images.front" / "chunk-000" / "file-000.mp4"
    import av

    with av.open(str(video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 16


def test_lerobot_import_of_foreign_dataset_fills_documented_defaults(store, tmp_path):
    import pyarrow.parquet as pq

    out = export_lerobot(store, tmp_path / "lr", **LOSSLESS)
    # Strip everything robot_rl adds, leaving a plain LeRobot v3 dataset.
    shutil.rmtree(out / "meta" / "robot_rl")
    data_file = out / "data" / "chunk-000" / "file-000.parquet"
    data = pq.read_table(data_file)
    extras = [
        "proposed_action",
        "is_demo",
        "next.terminated",
        "next.truncated",
        "is_intervention",
        "next.success",
    ]
    data = data.drop(extras).append_column(
        "complementary_info.is_intervention", data.column("is_intervention")
    )
    pq.write_table(data, data_file)
    info = json.loads((out / "meta" / "info.json").read_text())
    del info["robot_rl"]
    for name in extras:
        del info["features"][name]
    info["features"]["complementary_info.is_intervention"] = {"dtype": "bool", "shape": [1], "names": None}
    (out / "meta" / "info.json").write_text(json.dumps(info))

    back = import_lerobot(out, tmp_path / "back")
    for i, (a, b) in enumerate(zip(store, back)):
        T = a.length
        np.testing.assert_array_equal(b.observations["state"][:T], a.observations["state"][:T])
        np.testing.assert_array_equal(b.observations["state"][T], a.observations["state"][T - 1])
        np.testing.assert_array_equal(
            b.observations["pixels/front"][T], a.observations["pixels/front"][T - 1]
        )
        np.testing.assert_array_equal(b.proposed_actions, a.actions)
        np.testing.assert_array_equal(b.terminated, a.terminated | a.truncated)
        np.testing.assert_array_equal(b.is_intervention, a.is_intervention)
        assert b.is_demo.all() and not b.truncated.any()
        assert (b.source, b.reward_source, b.success) == ("import:lerobot", "sim", True)
        assert b.metadata == {"lerobot_episode_index": i, "final_observation": "duplicated"}
        assert b.task == a.task


def test_lerobot_errors(store, tmp_path):
    out = export_lerobot(store, tmp_path / "lr", **LOSSLESS)
    with pytest.raises(DataError, match="already exists"):
        export_lerobot(store, out)
    with pytest.raises(DataError, match="info.json"):
        import_lerobot(tmp_path / "nowhere", tmp_path / "s1")
    info = json.loads((out / "meta" / "info.json").read_text())
    (out / "meta" / "info.json").write_text(json.dumps({**info, "codebase_version": "v2.1"}))
    with pytest.raises(DataError, match="v2.1"):
        import_lerobot(out, tmp_path / "s2")
    no_fps = EpisodeStore(tmp_path / "nofps", create=True)
    no_fps.append(store[0])
    with pytest.raises(DataError, match="fps"):
        export_lerobot(no_fps, tmp_path / "lr2")
    assert not (tmp_path / "lr2").exists()
    odd = EpisodeStore(tmp_path / "odd", create=True, fps=10.0)
    rec = store[0]
    rec.observations["pixels/front"] = rec.observations["pixels/front"][:, :15, :15]
    odd.append(rec)
    with pytest.raises(DataError, match="even"):
        export_lerobot(odd, tmp_path / "lr3")
    assert not (tmp_path / "lr3").exists() and not list(tmp_path.glob(".lr3*"))
    del info["robot_rl"]
    info["features"]["observation.images.front"]["dtype"] = "image"
    (out / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match="'image'"):
        import_lerobot(out, tmp_path / "s3")


def test_robomimic_round_trip_and_layout(store, tmp_path):
    import h5py

    path = export_robomimic(store, tmp_path / "demos.hdf5")
    with h5py.File(path, "r") as f:
        data = f["data"]
        assert data.attrs["total"] == 16
        assert json.loads(data.attrs["env_args"])["env_name"] == "robot_rl/Lift-v0"
        demo = data["demo_1"]
        assert demo.attrs["num_samples"] == 8
        assert demo["obs/state"].shape == (8, 3) and demo["next_obs/state"].shape == (8, 3)
        assert demo["obs/front_image"].shape == (8, 16, 16, 3) and demo["obs/front_image"].dtype == np.uint8
        assert (
            demo["actions"].shape == (8, 2) and demo["rewards"].shape == (8,) and demo["dones"].shape == (8,)
        )
        assert [n.decode() for n in f["mask/success"][()]] == ["demo_0", "demo_2"]
        assert [n.decode() for n in f["mask/failure"][()]] == ["demo_1"]
    back = import_robomimic(path, tmp_path / "back")
    assert back.fps == 10.0 and back.env_id == "robot_rl/Lift-v0"
    for a, b in zip(store, back):
        assert_records_equal(a, b)


def test_robomimic_import_of_foreign_file(tmp_path):
    import h5py

    rng = np.random.default_rng(3)
    T = 6
    path = tmp_path / "foreign.hdf5"
    eef, obj = rng.normal(size=(T + 1, 3)), rng.normal(size=(T + 1, 5))
    img = rng.integers(0, 256, size=(T + 1, 8, 8, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        demo = f.create_group("data/demo_0")
        for group, sl in (("obs", slice(0, T)), ("next_obs", slice(1, T + 1))):
            demo[f"{group}/robot0_eef_pos"] = eef[sl]
            demo[f"{group}/object"] = obj[sl]
            demo[f"{group}/agentview_image"] = img[sl]
        demo["actions"] = rng.normal(size=(T, 7))
        demo["rewards"] = np.eye(T)[-1]
        demo["dones"] = np.eye(T, dtype=np.int64)[-1]
        demo.attrs["num_samples"] = T
        f["data"].attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {}})
    back = import_robomimic(path, tmp_path / "back", state_keys=["robot0_eef_pos", "object"], fps=20)
    rec = back[0]
    assert sorted(rec.observations) == ["pixels/agentview", "state"]
    np.testing.assert_allclose(rec.observations["state"], np.concatenate([eef, obj], 1).astype(np.float32))
    np.testing.assert_array_equal(rec.observations["pixels/agentview"], img)
    assert rec.terminated[-1] and not rec.truncated.any()
    assert (rec.source, rec.reward_source, rec.success) == ("import:robomimic", "sim", True)
    assert rec.is_demo.all() and back.fps == 20.0 and back.env_id == "Lift"


def test_robomimic_errors(tmp_path):
    import h5py

    (tmp_path / "bad.hdf5").write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="bad.hdf5"):
        import_robomimic(tmp_path / "bad.hdf5", tmp_path / "s")
    with h5py.File(tmp_path / "nodata.hdf5", "w") as f:
        f.create_group("other")
    with pytest.raises(DataError, match="no 'data' group"):
        import_robomimic(tmp_path / "nodata.hdf5", tmp_path / "s")
    with h5py.File(tmp_path / "nan.hdf5", "w") as f:
        f["data/demo_0/obs/state"] = np.zeros((3, 2))
        f["data/demo_0/actions"] = np.array([[0.0], [np.nan], [0.0]])
    with pytest.raises(DataError, match=r"nan\.hdf5:data/demo_0.*'actions' contains NaN"):
        import_robomimic(tmp_path / "nan.hdf5", tmp_path / "s2")
