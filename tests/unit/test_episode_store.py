"""Episode store: records, validation, atomic appends, lazy access, corrupt files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from robot_rl.core.errors import DataError
from robot_rl.data.episode_store import EpisodeRecord, EpisodeStore

pytestmark = pytest.mark.unit


def make_record(n: int = 5, seed: int = 0, camera: bool = True, **overrides) -> EpisodeRecord:
    rng = np.random.default_rng(seed)
    obs = {"state": rng.normal(size=(n + 1, 4)).astype(np.float32)}
    if camera:
        obs["pixels/front"] = rng.integers(0, 256, size=(n + 1, 16, 16, 3), dtype=np.uint8)
    fields = dict(
        observations=obs,
        actions=rng.normal(size=(n, 2)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        terminated=np.eye(n, dtype=bool)[-1],
        truncated=np.zeros(n, dtype=bool),
        proposed_actions=rng.normal(size=(n, 2)).astype(np.float32),
        is_demo=np.zeros(n, dtype=bool),
        is_intervention=rng.random(n) < 0.5,
        reward_source="sim",
        source="policy",
        task="lift the cube",
        success=True,
        metadata={"seed": seed, "bursts": [[1, 2]]},
    )
    fields.update(overrides)
    return EpisodeRecord(**fields)


def assert_records_equal(a: EpisodeRecord, b: EpisodeRecord) -> None:
    assert a.observations.keys() == b.observations.keys()
    for key in a.observations:
        assert a.observations[key].dtype == b.observations[key].dtype
        np.testing.assert_array_equal(a.observations[key], b.observations[key])
    for name in (
        "actions",
        "proposed_actions",
        "rewards",
        "terminated",
        "truncated",
        "is_demo",
        "is_intervention",
    ):
        assert getattr(a, name).dtype == getattr(b, name).dtype, name
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for name in ("reward_source", "source", "task", "success", "metadata"):
        assert getattr(a, name) == getattr(b, name), name


@pytest.fixture
def store3(tmp_path):
    store = EpisodeStore(tmp_path / "store", create=True, fps=20.0, env_id="robot_rl/Lift-v0")
    records = [
        make_record(5, 0),
        make_record(8, 1, success=False, source="teleop"),
        make_record(3, 2, source="teleop"),
    ]
    for r in records:
        store.append(r)
    return store, records


def test_append_reopen_round_trip(store3):
    store, records = store3
    reopened = EpisodeStore(store.root)
    assert len(reopened) == 3
    assert reopened.fps == 20.0 and reopened.env_id == "robot_rl/Lift-v0"
    assert reopened.obs_spec == {
        "state": {"shape": [4], "dtype": "float32"},
        "pixels/front": {"shape": [16, 16, 3], "dtype": "uint8"},
    }
    assert reopened.action_dim == 2
    for original, loaded in zip(records, reopened):
        assert_records_equal(original, loaded)
    assert_records_equal(records[-1], reopened[-1])
    np.testing.assert_array_equal(reopened.lengths(), [5, 8, 3])
    assert reopened.filter(success=True) == [0, 2]
    assert reopened.filter(source="teleop") == [1, 2]
    assert reopened.filter(success=True, source="teleop") == [2]
    with pytest.raises(IndexError):
        reopened[3]
    meta = json.loads((store.root / "meta.json").read_text())
    assert meta["format_version"] == 1 and meta["created_with"].startswith("robot_rl ")


def test_defaults_and_conversions():
    T = 4
    rec = EpisodeRecord(
        observations={"state": np.zeros((T + 1, 3))},  # float64 -> float32
        actions=np.ones((T, 2), dtype=np.int64),
        rewards=np.zeros(T),
        terminated=np.array([0, 0, 0, 1]),  # 0/1 ints -> bool
        truncated=np.zeros(T, dtype=bool),
        source="scripted_expert",
    )
    assert rec.observations["state"].dtype == np.float32 and rec.actions.dtype == np.float32
    assert rec.terminated.dtype == np.bool_ and rec.terminated[-1]
    np.testing.assert_array_equal(rec.proposed_actions, rec.actions)
    assert not rec.is_demo.any() and not rec.is_intervention.any()
    assert rec.length == T and rec.action_dim == 2


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"actions": np.array([[0.0, np.nan]] * 5)}, "actions"),
        ({"rewards": np.array([0.0, 0, 0, np.inf, 0])}, "rewards"),
        ({"rewards": np.zeros(4)}, "rewards"),
        ({"proposed_actions": np.zeros((5, 3))}, "proposed_actions"),
        ({"terminated": np.array([0, 2, 0, 0, 1])}, "terminated"),
        ({"is_intervention": np.array(["a"] * 5)}, "is_intervention"),
        ({"observations": {"state": np.zeros((5, 4))}}, "observations['state']"),
        (
            {"observations": {"state": np.zeros((6, 4)), "pixels/front": np.zeros((6, 16, 16, 3))}},
            "pixels/front",
        ),
        ({"observations": {"state": np.full((6, 4), np.nan)}}, "observations['state']"),
        ({"observations": {}}, "observations"),
        ({"reward_source": "oracle"}, "reward_source"),
        ({"source": ""}, "source"),
        ({"success": "yes"}, "success"),
        ({"metadata": {"x": object()}}, "metadata"),
    ],
)
def test_validation_names_the_field(overrides, field):
    with pytest.raises(DataError, match=field.replace("[", r"\[").replace("]", r"\]")):
        make_record(5, **overrides)


def test_obs_keys_and_shapes_checked_against_meta(store3):
    store, _ = store3
    with pytest.raises(DataError, match="'pixels/front' is missing"):
        store.append(make_record(4, camera=False))
    extra = make_record(4)
    extra.observations["goal"] = np.zeros((5, 3), dtype=np.float32)
    with pytest.raises(DataError, match="'goal' is not in store"):
        store.append(extra)
    wrong = make_record(4)
    wrong.observations["state"] = np.zeros((5, 7), dtype=np.float32)
    with pytest.raises(DataError, match="'state': shape/dtype"):
        store.append(wrong)
    with pytest.raises(DataError, match="action_dim"):
        store.append(make_record(4, actions=np.zeros((4, 3)), proposed_actions=None))
    assert len(EpisodeStore(store.root)) == 3


def test_crash_mid_write_keeps_previous_episodes(store3, monkeypatch):
    store, records = store3

    def crashing_savez(file, **arrays):
        file.write(b"PK\x03\x04half an episode")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(np, "savez", crashing_savez)
    with pytest.raises(KeyboardInterrupt):
        store.append(make_record(6, 9))
    monkeypatch.undo()
    reopened = EpisodeStore(store.root)
    assert len(reopened) == 3
    assert sorted(p.name for p in reopened.episodes_dir.iterdir()) == [
        f"episode_{i:06d}.npz" for i in range(3)
    ]
    assert_records_equal(records[2], reopened[2])
    assert reopened.append(make_record(6, 9)) == 3


def test_leftover_temp_file_of_dead_writer_is_ignored_and_cleaned(store3):
    store, _ = store3
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = store.episodes_dir / f".episode_000003.npz.tmp-{dead.pid}"
    leftover.write_bytes(b"PK\x03\x04 truncated")
    reopened = EpisodeStore(store.root)
    assert len(reopened) == 3
    assert not leftover.exists()


def test_crash_between_episode_file_and_index_rebuilds_index(store3, monkeypatch):
    store, _ = store3

    def crash(entries):
        raise KeyboardInterrupt("crash after the rename, before the index")

    monkeypatch.setattr(store, "_write_index", crash)
    with pytest.raises(KeyboardInterrupt):
        store.append(make_record(7, 5, success=False))
    reopened = EpisodeStore(store.root)  # the complete episode file is kept; the index catches up
    np.testing.assert_array_equal(reopened.lengths(), [5, 8, 3, 7])
    assert reopened.filter(success=False) == [1, 3]
    assert json.loads((store.root / "index.json").read_text())["episodes"][3]["length"] == 7


def test_getitem_reads_only_that_episode(store3, monkeypatch):
    store, records = store3
    (store.episodes_dir / "episode_000000.npz").write_bytes(b"garbage")  # never read below
    loaded: list[str] = []
    real_load = np.load

    def counting_load(file, *args, **kwargs):
        loaded.append(str(file))
        return real_load(file, *args, **kwargs)

    monkeypatch.setattr(np, "load", counting_load)
    reopened = EpisodeStore(store.root)  # consistent index: no episode file is opened
    assert loaded == [] and len(reopened) == 3 and reopened.lengths().sum() == 16
    episode = reopened[1]
    assert loaded == [str(store.episodes_dir / "episode_000001.npz")]
    assert_records_equal(records[1], episode)


@pytest.mark.parametrize("content", [b"", b"not a zip file at all", b"PK\x03\x04 truncated"])
def test_corrupt_or_empty_episode_file_names_the_file(store3, content):
    store, _ = store3
    (store.episodes_dir / "episode_000001.npz").write_bytes(content)
    with pytest.raises(DataError, match="episode_000001.npz"):
        EpisodeStore(store.root)[1]


def test_episode_file_missing_an_entry_names_file_and_entry(store3):
    store, records = store3
    arrays = records[1].to_arrays()
    del arrays["rewards"]
    with open(store.episodes_dir / "episode_000001.npz", "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(DataError, match=r"episode_000001\.npz.*'rewards'"):
        store[1]


def test_invalid_data_inside_a_file_names_file_and_field(store3):
    store, records = store3
    arrays = records[0].to_arrays()
    arrays["actions"][0, 0] = np.nan
    with open(store.episodes_dir / "episode_000000.npz", "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(DataError, match=r"episode_000000\.npz.*'actions' contains NaN"):
        store[0]


def test_not_a_store_and_bad_meta(tmp_path):
    with pytest.raises(DataError, match="not an episode store"):
        EpisodeStore(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not an episode store"):
        EpisodeStore(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "meta.json").write_text('{"format": "something else"}')
    with pytest.raises(DataError, match="format"):
        EpisodeStore(tmp_path / "other")
    (tmp_path / "other" / "meta.json").write_text("{not json")
    with pytest.raises(DataError, match="meta.json"):
        EpisodeStore(tmp_path / "other")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="non-empty"):
        EpisodeStore(tmp_path / "busy", create=True)


def test_missing_episode_file_is_reported(store3):
    store, _ = store3
    (store.episodes_dir / "episode_000001.npz").unlink()
    with pytest.raises(DataError, match="episode_000001.npz"):
        EpisodeStore(store.root)


def test_corrupt_index_is_rebuilt(store3):
    store, _ = store3
    (store.root / "index.json").write_text("{broken")
    reopened = EpisodeStore(store.root)
    np.testing.assert_array_equal(reopened.lengths(), [5, 8, 3])


def test_fps_mismatch_and_compressed_store(store3, tmp_path):
    store, records = store3
    with pytest.raises(DataError, match="fps"):
        EpisodeStore(store.root, fps=10.0)
    small = EpisodeStore(tmp_path / "zipped", create=True, compress=True)
    small.append(records[0])
    assert_records_equal(records[0], EpisodeStore(tmp_path / "zipped")[0])
