"""rosbag2 (MCAP) bags <-> the episode store (robot_rl/data/rosbag.py, robot-rl-bag), without rclpy.

- a bag written by rosbags' own writer (as a stand-in for ``ros2 bag record``: multi-rate topics, no
  episode events, teleop events) imports to hand-worked per-step values, from MCAP and from sqlite3;
- episode events (start / terminated / truncated matched by stamp, a reset, a latched end of an
  episode never seen) and the recorder's end_episode / discard markers, hand-worked;
- store -> MCAP -> store is exact, and the exported bag reads with rosbags (metadata.yaml checked)
  and with mcap's indexed reader (what Foxglove uses);
- a bag cut at any byte imports exactly the episodes that were complete before the cut and says so;
- the command line (import with a LeRobot export, export, info, errors) and ``demos.path=<bag>``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.unit
pytest.importorskip("mcap", reason="mcap not installed (pip install 'robot-rl[bag]')")
pytest.importorskip("mcap_ros2", reason="mcap-ros2-support not installed (pip install 'robot-rl[bag]')")
pytest.importorskip("rosbags", reason="rosbags not installed (pip install 'robot-rl[bag]')")

from robot_rl.core.errors import DataError  # noqa: E402
from robot_rl.data.episode_store import EpisodeRecord, EpisodeStore  # noqa: E402
from robot_rl.data.rosbag import (  # noqa: E402
    EPISODE_INFO_TOPIC,
    BagWriter,
    ImportOptions,
    bag_to_records,
    export_bag,
    import_bag,
    read_bag,
)

MS = 1_000_000  # ns
BASE = 1_000_000 * MS  # 1000 s after the epoch: log times of the hand-built bags are BASE + x ms


# --- a bag from another writer: ros2-bag-record-like, multi-rate, hand-worked resampling ----------


def _write_rosbags_bag(path: Path, storage: str) -> None:
    """A bag written by rosbags' Writer (its own MCAP / sqlite3 writer and metadata.yaml):

    /joint_states every 10 ms (0..150 ms), joints c, a, b at [100 + i, i, -i] (i = ms / 10);
    /robot_rl/task 'pick' at -1 ms, 'place' at 99 ms (no episode events: a new task starts an episode);
    /robot_rl/executed_action at 5, 25, 45, 65, 85 | 105, 125, 145 ms, action [k, k + 0.5] (k = tick);
    labels policy, (none: /robot_rl/command_source 'repeat:teleop' at 26), teleop, hold:watchdog,
    (none, no source message: the takeover flag, True since 80) | policy, policy, policy;
    /robot_rl/action [9, 9] at 3, [8, 8] at 44, [1, 2, 3] (wrong length) at 84 ms;
    /robot_rl/reward 1 @12, 2 @30, 3 @33, 5 @70, 6 @95 | 8 @120, 9 @148;
    /robot_rl/teleop/event 'success' at 98 ms (ends the first episode).
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    T = ts.types
    msgs: list[tuple[int, str, str, object]] = []

    def add(ms: float, topic: str, msgtype: str, msg: object) -> None:
        msgs.append((BASE + round(ms * MS), topic, msgtype, msg))

    def time_of(ms: float) -> object:
        ns = BASE + round(ms * MS)
        return T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)

    def f32(values, label=None):
        dims = [T["std_msgs/msg/MultiArrayDimension"](label=label, size=len(values), stride=len(values))]
        layout = T["std_msgs/msg/MultiArrayLayout"](dim=dims if label else [], data_offset=0)
        return T["std_msgs/msg/Float32MultiArray"](layout=layout, data=np.asarray(values, dtype=np.float32))

    string = T["std_msgs/msg/String"]
    for i in range(16):
        header = T["std_msgs/msg/Header"](stamp=time_of(10 * i), frame_id="")
        js = T["sensor_msgs/msg/JointState"](
            header=header,
            name=["c", "a", "b"],
            position=np.array([100.0 + i, i, -i]),
            velocity=np.zeros(0),
            effort=np.zeros(0),
        )
        add(10 * i, "/joint_states", "sensor_msgs/msg/JointState", js)
    add(-1, "/robot_rl/task", "std_msgs/msg/String", string(data="pick"))
    add(99, "/robot_rl/task", "std_msgs/msg/String", string(data="place"))
    labels = ["source:policy", None, "source:teleop", "source:hold:watchdog", None] + ["source:policy"] * 3
    for k, (ms, label) in enumerate(zip([5, 25, 45, 65, 85, 105, 125, 145], labels)):
        add(ms, "/robot_rl/executed_action", "std_msgs/msg/Float32MultiArray", f32([k, k + 0.5], label))
    add(26, "/robot_rl/command_source", "std_msgs/msg/String", string(data="repeat:teleop"))
    for ms, value in ((3, [9, 9]), (44, [8, 8]), (84, [1, 2, 3])):
        add(ms, "/robot_rl/action", "std_msgs/msg/Float32MultiArray", f32(value))
    add(80, "/robot_rl/intervention", "std_msgs/msg/Bool", T["std_msgs/msg/Bool"](data=True))
    for ms, r in ((12, 1), (30, 2), (33, 3), (70, 5), (95, 6), (120, 8), (148, 9)):
        add(ms, "/robot_rl/reward", "std_msgs/msg/Float32", T["std_msgs/msg/Float32"](data=float(r)))
    add(98, "/robot_rl/teleop/event", "std_msgs/msg/String", string(data="success"))
    plugin = StoragePlugin.SQLITE3 if storage == "sqlite3" else StoragePlugin.MCAP
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for log_time, topic, msgtype, msg in sorted(msgs, key=lambda m: m[0]):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=ts)
            writer.write(conns[topic], log_time, bytes(ts.serialize_cdr(msg, msgtype)))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_foreign_multirate_bag_resamples_to_the_control_ticks(tmp_path, storage):
    bag = tmp_path / "bag"
    _write_rosbags_bag(bag, storage)
    contents = read_bag(bag)
    assert contents.complete, contents.problem
    records, report = bag_to_records(
        contents, ImportOptions(state_topic="/joint_states", joint_names=("a", "b"))
    )
    assert report.imported == 2 and report.steps == 8 and not report.skipped, report.line()
    first, second = records

    # episode 1: ticks 5, 25, 45, 65, 85 ms; it ends at the teleop 'success' (98 ms): final
    # observation = the last state before it (90 ms), reward windows (t_k, t_k+1], the last one to 98
    i = np.array([0, 2, 4, 6, 8, 9], dtype=np.float32)  # the latest state at or before each tick
    np.testing.assert_array_equal(first.observations["state"], np.stack([i, -i], axis=1))
    np.testing.assert_array_equal(first.actions, [[k, k + 0.5] for k in range(5)])
    # proposals: zero-order hold; the wrong-length one at 84 ms is replaced by the executed action
    np.testing.assert_array_equal(first.proposed_actions, [[9, 9], [9, 9], [8, 8], [8, 8], [4, 4.5]])
    np.testing.assert_array_equal(first.rewards, [1, 3, 0, 5, 6])  # (45, 65] has none: 0, counted
    assert first.is_intervention.tolist() == [False, True, True, False, True]
    assert first.metadata["command_source"] == ["policy", "repeat:teleop", "teleop", "hold:watchdog", ""]
    assert first.metadata["missing_rewards"] == 1 and first.metadata["replaced_proposals"] == 1
    assert first.metadata["end_reason"] == "teleop:success" and first.success
    assert first.truncated.tolist() == [False] * 4 + [True] and not first.terminated.any()
    assert first.task == "pick" and first.reward_source == "sim" and first.source == "import:rosbag2"
    assert first.metadata["log_time_ns"] == [BASE + 5 * MS, BASE + 98 * MS]

    # episode 2 ('place' from the first state after 98 ms): ticks 105, 125, 145; the complete bag's
    # end closes it at 150 ms
    i = np.array([10, 12, 14, 15], dtype=np.float32)
    np.testing.assert_array_equal(second.observations["state"], np.stack([i, -i], axis=1))
    np.testing.assert_array_equal(second.actions, [[k, k + 0.5] for k in (5, 6, 7)])
    np.testing.assert_array_equal(second.proposed_actions, second.actions)  # [1, 2, 3] still held
    np.testing.assert_array_equal(second.rewards, [8, 0, 9])
    assert not second.is_intervention.any() and not second.success
    assert second.metadata["end_reason"] == "end_of_bag" and second.truncated[-1]
    assert second.task == "place" and second.metadata["replaced_proposals"] == 3

    # the state topic default (/robot_rl/observation/state) falls back to /joint_states: all joints
    records, _ = bag_to_records(contents)
    np.testing.assert_array_equal(records[0].observations["state"][1], [102, 2, -2])
    with pytest.raises(DataError, match=r"joints \['z'\] are not in the state messages"):
        bag_to_records(contents, ImportOptions(joint_names=("a", "z")))


# --- episode events and the recorder's markers -----------------------------------------------------


def _contract_bag(path: Path, events: list[tuple[float, str, str, object]]) -> None:
    """States on /robot_rl/observation/state every 10 ms (0..190), stamp = 500 s + its log time,
    value [i]; an executed action [i] 2 ms after each state; a reward i 1 ms after each state i;
    ``events``: (ms, topic, kind, payload) with payload a stamp in ms (episode events) or text."""
    with BagWriter(path, custom={"source": "sim_bridge", "fps": "100.0"}) as w:
        m = w.msg
        items: list[tuple[int, str, str, object]] = []

        def stamp(ms: float) -> object:
            ns = 500 * 10**9 + round(ms * MS)
            return m("builtin_interfaces/msg/Time", sec=ns // 10**9, nanosec=ns % 10**9)

        for i in range(20):
            header = m("std_msgs/msg/Header", stamp=stamp(10 * i), frame_id="")
            js = m(
                "sensor_msgs/msg/JointState",
                header=header,
                name=["state_0"],
                position=np.array([float(i)]),
                velocity=np.zeros(0),
                effort=np.zeros(0),
            )
            items.append((10 * i, "/robot_rl/observation/state", "sensor_msgs/msg/JointState", js))
            layout = m("std_msgs/msg/MultiArrayLayout", dim=[], data_offset=0)
            action = m("std_msgs/msg/Float32MultiArray", layout=layout, data=np.array([i], np.float32))
            items.append((10 * i + 2, "/robot_rl/executed_action", "std_msgs/msg/Float32MultiArray", action))
            items.append(
                (10 * i + 1, "/robot_rl/reward", "std_msgs/msg/Float32", m("std_msgs/msg/Float32", data=i))
            )
        for ms, topic, kind, payload in events:
            if topic == "/robot_rl/episode_event":
                msg = m("std_msgs/msg/Header", stamp=stamp(payload), frame_id=kind)
                items.append((ms, topic, "std_msgs/msg/Header", msg))
            else:
                items.append((ms, topic, "std_msgs/msg/String", m("std_msgs/msg/String", data=kind)))
        for ms, topic, msgtype, msg in sorted(items, key=lambda x: x[0]):
            w.write(topic, msgtype, msg, BASE + round(ms * MS))


def test_episode_events_recorder_markers_and_teleop_events(tmp_path):
    ev = "/robot_rl/episode_event"
    events = [
        (-5, ev, "terminated", -100),  # latched end of an episode before the bag: ignored
        (29, ev, "start", 30),  # the event before its observation (30 ms): the first one ends (reset)
        (65, ev, "terminated", 60),  # after its observation (60 ms), matched by stamp
        (75, ev, "start", 70),
        (96, "/robot_rl/recorder/event", "end_episode", None),  # ends at the 90 ms state
        (126, "/robot_rl/recorder/event", "discard", None),  # drops 100..120
        (128, "/robot_rl/teleop/event", "success", None),  # ignored: the recorder acted on it itself
        (158, ev, "truncated", 150),
        (160.5, ev, "start", 160),  # the rest (160..190) is still open when the bag ends: end_of_bag
    ]
    _contract_bag(tmp_path / "bag", events)
    records, report = bag_to_records(read_bag(tmp_path / "bag"))
    got = [
        (r.metadata["end_reason"], r.observations["state"][:, 0].tolist(), r.actions[:, 0].tolist())
        for r in records
    ]
    # steps: the ticks from the first observation up to (not including) the final one; the action
    # at tick i answers state i
    assert got == [
        ("reset", [0, 1, 2], [0, 1]),
        ("terminated", [3, 4, 5, 6], [3, 4, 5]),
        ("end_episode", [7, 8, 9], [7, 8]),
        ("truncated", [13, 14, 15], [13, 14]),  # the first state after the discard is 130 ms
        ("end_of_bag", [16, 17, 18, 19], [16, 17, 18]),
    ], report.line()
    assert [bool(r.terminated[-1]) for r in records] == [False, True, False, False, False]
    # reward of step k: the one right after state k + 1; the last step's window closes at the event
    # (terminated at 65 ms: reward 6 at 61 ms), the reset's at the start event (29 ms: reward 2 at 21)
    assert records[0].rewards.tolist() == [1, 2] and records[1].rewards.tolist() == [4, 5, 6]
    assert {r.source for r in records} == {"sim_bridge"} and report.fps == 100.0
    assert report.imported == 5 and report.complete

    # without the recorder's markers the teleop event ends an episode (success) at the 120 ms state
    events = [e for e in events if e[1] != "/robot_rl/recorder/event"]
    _contract_bag(tmp_path / "bag2", events)
    records, _ = bag_to_records(read_bag(tmp_path / "bag2"))
    third = records[2]
    assert third.metadata["end_reason"] == "teleop:success" and third.success
    assert third.observations["state"][:, 0].tolist() == [7, 8, 9, 10, 11, 12]


# --- store -> MCAP -> store ---------------------------------------------------------------------


def _store(root: Path, n: int = 3, cameras: bool = True) -> EpisodeStore:
    rng = np.random.default_rng(0)
    store = EpisodeStore(root, create=True, fps=20.0, env_id="robot_rl/Lift-v0")
    for e in range(n):
        T = 6 + 3 * e
        last = np.arange(T) == T - 1
        obs = {"state": rng.normal(size=(T + 1, 7))}
        if cameras:
            obs["pixels/front"] = rng.integers(0, 256, (T + 1, 4, 6, 3), dtype=np.uint8)
        store.append(
            EpisodeRecord(
                observations=obs,
                actions=rng.uniform(-1, 1, (T, 4)),
                proposed_actions=rng.uniform(-1, 1, (T, 4)),
                rewards=rng.normal(size=T),
                terminated=last & (e != 1),
                truncated=last & (e == 1),
                is_demo=np.arange(T) < 3 if e == 2 else np.zeros(T, bool),
                is_intervention=(np.arange(T) % 3 == 1),
                task=f"lift the cube {e}",
                success=e != 1,
                source="sim_bridge" if e else "scripted_expert",
                reward_source="sim" if e else "none",
                metadata={"seed": e, "command_source": ["policy", "teleop", "hold:watchdog"] * T},
            )
        )
    return store


def _assert_same(a: EpisodeRecord, b: EpisodeRecord, extras: bool = True) -> None:
    assert sorted(a.observations) == sorted(b.observations)
    for key in a.observations:
        np.testing.assert_array_equal(a.observations[key], b.observations[key], err_msg=key)
        assert a.observations[key].dtype == b.observations[key].dtype
    names = ["actions", "proposed_actions", "rewards", "terminated", "truncated", "is_intervention"]
    for name in [*names, "is_demo"] if extras else names:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.task == b.task and a.success == b.success
    if extras:
        assert (a.source, a.reward_source, a.metadata) == (b.source, b.reward_source, b.metadata)


def test_store_to_bag_to_store_is_exact(tmp_path):
    store = _store(tmp_path / "store")
    export_bag(store, tmp_path / "bag", start_time_ns=BASE)
    report = import_bag(tmp_path / "bag", tmp_path / "back")
    back = EpisodeStore(tmp_path / "back")
    assert report.imported == len(back) == len(store) == 3, report.line()
    assert (back.fps, back.env_id) == (20.0, "robot_rl/Lift-v0")
    for a, b in zip(store, back):
        _assert_same(a, b)

    # the contract topics alone (no /robot_rl/episode_info) carry everything but is_demo and the
    # store's own metadata / source
    contents = read_bag(tmp_path / "bag")
    contents.messages = [m for m in contents.messages if m.topic != EPISODE_INFO_TOPIC]
    records, _ = bag_to_records(contents)
    for a, b in zip(store, records):
        _assert_same(a, b, extras=False)
        assert not b.is_demo.any() and b.metadata["missing_rewards"] == 0
        assert [lab == "teleop" for lab in b.metadata["command_source"]] == a.is_intervention.tolist()


def test_exported_bag_reads_with_rosbags_and_the_mcap_index(tmp_path):
    from mcap.reader import make_reader
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    store = _store(tmp_path / "store", n=2)
    export_bag(store, tmp_path / "bag", start_time_ns=BASE)
    lengths = store.lengths().tolist()  # [6, 9]
    ts = get_typestore(Stores.ROS2_JAZZY)
    with Reader(tmp_path / "bag") as reader:  # parses metadata.yaml, reads the MCAP through its index
        counts = {c.topic: c.msgcount for c in reader.connections}
        types = {c.topic: c.msgtype for c in reader.connections}
        states, labels = [], []
        for conn, log_time, raw in reader.messages():
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == "/robot_rl/observation/state":
                states.append(msg.position)
                assert (msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec) == log_time
            elif conn.topic == "/robot_rl/executed_action":
                labels.append(msg.layout.dim[0].label)
        assert reader.message_count == sum(counts.values())
    assert (
        counts["/robot_rl/observation/state"] == counts["/robot_rl/camera/front/image_raw"] == 6 + 1 + 9 + 1
    )
    assert counts["/robot_rl/executed_action"] == counts["/robot_rl/action"] == sum(lengths)
    assert counts["/robot_rl/episode_event"] == 4 and counts["/robot_rl/task"] == 2
    assert types["/robot_rl/episode_event"] == "std_msgs/msg/Header"
    assert types["/robot_rl/executed_action"] == "std_msgs/msg/Float32MultiArray"
    assert types["/robot_rl/camera/front/image_raw"] == "sensor_msgs/msg/Image"
    np.testing.assert_array_equal(np.stack(states[:7]), store[0].observations["state"])
    assert labels[:3] == ["source:policy", "source:teleop", "source:hold:watchdog"]
    meta = (tmp_path / "bag" / "metadata.yaml").read_text()
    assert "storage_identifier: mcap" in meta and "transient_local" in meta

    with open(tmp_path / "bag" / "bag.mcap", "rb") as f:  # the summary Foxglove and ros2 bag use
        reader = make_reader(f)
        summary = reader.get_summary()
        assert reader.get_header().profile == "ros2"
        assert summary.statistics.message_count == sum(counts.values())
        assert len(summary.chunk_indexes) == 2  # one chunk per episode (flushed at its end)
        assert {s.encoding for s in summary.schemas.values()} == {"ros2msg"}
        assert {c.message_encoding for c in summary.channels.values()} == {"cdr"}


def test_a_bag_cut_at_any_byte_imports_the_complete_episodes(tmp_path):
    store = _store(tmp_path / "store", n=3, cameras=False)
    export_bag(store, tmp_path / "bag", start_time_ns=BASE, chunk_size=1500)  # several chunks each
    data = (tmp_path / "bag" / "bag.mcap").read_bytes()
    cut_dir = tmp_path / "cut"
    cut_dir.mkdir()
    seen: dict[int, int] = {}
    unfinished = 0
    previous = 0
    for cut in [*range(0, len(data), 97), len(data) - 1]:
        (cut_dir / "cut.mcap").write_bytes(data[:cut])
        contents = read_bag(cut_dir / "cut.mcap")
        records, report = bag_to_records(contents)
        assert not contents.complete and "cut" in contents.problem, contents.problem
        # a prefix of the episodes, each exact, never fewer for a longer file
        assert previous <= len(records) <= 3
        for a, b in zip(store, records):
            _assert_same(a, b)
        previous = len(records)
        seen[len(records)] = seen.get(len(records), 0) + 1
        if "unfinished last episode" in report.line():
            unfinished += 1
            assert "truncated" in report.line() and f"imported {len(records)} episodes" in report.line()
    assert set(seen) == {0, 1, 2, 3}, seen  # every count happens for some cut
    assert unfinished > 10  # cuts inside an episode's later chunks leave part of it readable
    # the full file minus its last byte (the footer's magic): every episode, flagged as not complete
    assert previous == 3


# --- the command line and demos.path --------------------------------------------------------------


def test_cli_import_export_info_and_errors(tmp_path, capsys):
    from robot_rl.cli.bag import main

    store = _store(tmp_path / "store", n=2)
    main(["export", str(tmp_path / "store"), "--out", str(tmp_path / "bag")])
    assert "exported 2 episodes (15 steps)" in capsys.readouterr().out
    main(["info", str(tmp_path / "bag")])
    out = capsys.readouterr().out
    assert "/robot_rl/executed_action  std_msgs/msg/Float32MultiArray  15" in out
    assert "would import 2 episodes (15 steps)" in out
    main(
        ["import", str(tmp_path / "bag"), "--out", str(tmp_path / "back"), "--lerobot", str(tmp_path / "lr")]
    )
    out = capsys.readouterr().out
    assert "imported 2 episodes (15 steps)" in out and "LeRobotDataset v3" in out
    info = json.loads((tmp_path / "lr" / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 2 and info["total_frames"] == 15 and info["fps"] == 20
    for a, b in zip(store, EpisodeStore(tmp_path / "back")):
        _assert_same(a, b)

    bad = [
        (["import", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")], "is not a rosbag2 bag"),
        (["export", str(tmp_path / "store"), "--out", str(tmp_path / "bag")], "already exists"),
        (["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "b2")], "is not an episode store"),
        (["import", str(tmp_path / "bag"), "--out", str(tmp_path / "y"), "--min-steps", "0"], "--min-steps"),
        (["import", str(tmp_path / "bag"), "--out", str(tmp_path / "z"), "--cameras", "wrist"], "'wrist'"),
    ]
    for argv, expected in bad:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith("error: ") and expected in err, err
        assert err.count("\n") == 1, err


def test_demos_path_accepts_a_bag(tmp_path):
    from robot_rl.data.demos import load_demos

    store = _store(tmp_path / "store", n=3)
    export_bag(store, tmp_path / "bag")
    episodes = load_demos(str(tmp_path / "bag"), keep_failures=False, cameras=())
    assert len(episodes) == 2  # episode 1 is a failure
    np.testing.assert_array_equal(episodes[1].states, store[2].observations["state"][:-1])
    np.testing.assert_array_equal(episodes[1].actions, store[2].actions)
    assert episodes[1].pixels == {}
    shutil.copy(tmp_path / "bag" / "bag.mcap", tmp_path / "alone.mcap")  # a bare .mcap file too
    assert len(load_demos(str(tmp_path / "alone.mcap"), keep_failures=True, cameras=["front"])) == 3
