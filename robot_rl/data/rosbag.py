"""rosbag2 (MCAP) bags <-> the episode store, without rclpy (``docs/data.md`` §5).

A bag is a folder ``<name>/`` with ``<name>.mcap`` (profile ``ros2``, ``ros2msg`` schemas, ``cdr``
messages, ``log_time`` = receive time in ns) and rosbag2's ``metadata.yaml`` (version 9): what
``ros2 bag record`` writes and ``ros2 bag info`` / ``ros2 bag play`` / Foxglove read.

Libraries: ``mcap`` writes and reads the container (a chunk can be finished on demand, so a recorder
flushes one per episode, and a file cut anywhere is read up to its last complete chunk);
``rosbags``' type store gives the message definitions, their type hashes and the CDR encoding of
exported messages; ``mcap-ros2-support`` decodes messages on import from the schemas stored in the
bag (so bags from other ROS 2 distributions import too). ``.db3`` (sqlite3) bags are read with
``rosbags``.

Import (:func:`read_bag` + :func:`bag_to_records`, or :func:`import_bag`): the control ticks are the
``/robot_rl/executed_action`` messages; at each tick every other stream is a zero-order hold of its
latest message at or before the tick (state, proposal, intervention flag, camera images); the reward
of step ``k`` is the latest reward received in ``(t_k, t_{k+1}]`` (``t_T`` = the episode's close
time). Episode boundaries come from ``/robot_rl/episode_event`` (``start`` / ``terminated`` /
``truncated``, matched to observations by stamp), the recorder's ``/robot_rl/recorder/event``
(``end_episode`` / ``discard``), the teleop device's ``/robot_rl/teleop/event``, new
``/robot_rl/task`` messages (only in bags without episode events) and the end of a complete bag. An
episode still open where a cut file ends is not imported (reported).

Export (:func:`export_bag`): each episode on a synthetic timeline at the store's fps, on the contract
topics, plus one ``/robot_rl/episode_info`` (std_msgs/String, JSON) per episode with what no
contract topic carries (``is_demo``, source, metadata, ...), so store -> bag -> store is exact.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
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

# --- the topics (docs/ros.md) ---------------------------------------------------------------------
STATE_TOPIC = "/robot_rl/observation/state"
JOINT_STATES_TOPIC = "/joint_states"
EXECUTED_TOPIC = "/robot_rl/executed_action"
PROPOSED_TOPIC = "/robot_rl/action"
SOURCE_TOPIC = "/robot_rl/command_source"
INTERVENTION_TOPIC = "/robot_rl/intervention"
REWARD_TOPIC = "/robot_rl/reward"
SUCCESS_TOPIC = "/robot_rl/success"
TASK_TOPIC = "/robot_rl/task"
EVENT_TOPIC = "/robot_rl/episode_event"
TCP_TOPIC = "/robot_rl/tcp_position"
TELEOP_ACTION_TOPIC = "/robot_rl/teleop/action"
TELEOP_EVENT_TOPIC = "/robot_rl/teleop/event"
CAMERA_TOPIC = "/robot_rl/camera/{}/image_raw"
# written into bags only (never published): the recorder's service-driven boundaries, and the
# exporter's per-episode extras
RECORDER_EVENT_TOPIC = "/robot_rl/recorder/event"
EPISODE_INFO_TOPIC = "/robot_rl/episode_info"

FLOAT32_ARRAY = "std_msgs/msg/Float32MultiArray"
JOINT_STATE = "sensor_msgs/msg/JointState"
STRING = "std_msgs/msg/String"
BOOL = "std_msgs/msg/Bool"
FLOAT32 = "std_msgs/msg/Float32"
HEADER = "std_msgs/msg/Header"
IMAGE = "sensor_msgs/msg/Image"
POINT_STAMPED = "geometry_msgs/msg/PointStamped"

# topic -> (message type, QoS the nodes publish with: reliability, durability, depth)
TOPIC_TYPES: dict[str, tuple[str, tuple[str, str, int]]] = {
    STATE_TOPIC: (JOINT_STATE, ("reliable", "volatile", 10)),
    JOINT_STATES_TOPIC: (JOINT_STATE, ("reliable", "volatile", 10)),
    EXECUTED_TOPIC: (FLOAT32_ARRAY, ("reliable", "volatile", 10)),
    PROPOSED_TOPIC: (FLOAT32_ARRAY, ("reliable", "volatile", 1)),
    SOURCE_TOPIC: (STRING, ("reliable", "volatile", 10)),
    INTERVENTION_TOPIC: (BOOL, ("reliable", "volatile", 1)),
    REWARD_TOPIC: (FLOAT32, ("reliable", "volatile", 10)),
    SUCCESS_TOPIC: (BOOL, ("reliable", "volatile", 10)),
    TASK_TOPIC: (STRING, ("reliable", "transient_local", 1)),
    EVENT_TOPIC: (HEADER, ("reliable", "transient_local", 1)),
    TCP_TOPIC: (POINT_STAMPED, ("reliable", "volatile", 10)),
    TELEOP_ACTION_TOPIC: (FLOAT32_ARRAY, ("reliable", "volatile", 1)),
    TELEOP_EVENT_TOPIC: (STRING, ("reliable", "volatile", 10)),
    RECORDER_EVENT_TOPIC: (STRING, ("reliable", "volatile", 10)),
    EPISODE_INFO_TOPIC: (STRING, ("reliable", "volatile", 10)),
}
CAMERA_QOS = ("reliable", "volatile", 2)

METADATA_VERSION = 9  # rosbag2's metadata.yaml version (Jazzy and later)
CUSTOM_PREFIX = "robot_rl."  # our keys in metadata.yaml's custom_data and the MCAP metadata record
DEFAULT_EXPORT_FPS = 10.0  # export timeline of a store without fps
_MCAP_MAGIC = b"\x89MCAP0\r\n"


def _require_bag(feature: str) -> None:
    from robot_rl.core.optional import require

    for module in ("mcap", "mcap_ros2", "rosbags"):
        require(module, feature)


def _typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def _qos_profile(reliability: str, durability: str, depth: int) -> dict[str, Any]:
    """One offered QoS profile in rosbag2's version-9 metadata layout (durations 0 = default)."""
    zero = {"sec": 0, "nsec": 0}
    return {
        "history": "keep_last",
        "depth": depth,
        "reliability": reliability,
        "durability": durability,
        "deadline": dict(zero),
        "lifespan": dict(zero),
        "liveliness": "automatic",
        "liveliness_lease_duration": dict(zero),
        "avoid_ros_namespace_conventions": False,
    }


def _dump_yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def is_bag(path: str | Path) -> bool:
    """A rosbag2 folder (``metadata.yaml`` or ``*.mcap`` / ``*.db3`` inside) or an ``.mcap`` file."""
    p = Path(path)
    if p.is_file():
        return p.suffix == ".mcap"
    return p.is_dir() and ((p / "metadata.yaml").is_file() or any(p.glob("*.mcap")) or any(p.glob("*.db3")))


# --- writing ------------------------------------------------------------------------------------


class BagWriter:
    """Writes a rosbag2 MCAP bag folder ``path`` (created; it must not exist).

    ``write_raw`` takes CDR bytes (what rclpy's ``serialize_message`` gives a recorder),
    ``write`` a message built with :meth:`msg` (serialized here). Every message goes to the chunk in
    progress; :meth:`flush` finishes that chunk, fsyncs the file and rewrites ``metadata.yaml``, so
    a process killed later leaves everything written before the flush readable
    (:func:`read_bag`); :meth:`close` writes the summary, the footer and the final ``metadata.yaml``.

    Args:
        path: the bag folder; the file is ``<path>/<path name>.mcap``.
        custom: ``{key: str}`` stored as ``robot_rl.<key>`` in ``metadata.yaml``'s ``custom_data``
            and in an MCAP metadata record ``robot_rl`` at the start of the file.
        chunk_size: bytes of messages after which a chunk is finished anyway.
        compression: ``"zstd"``, ``"lz4"`` or ``"none"`` (per chunk).
    """

    def __init__(
        self,
        path: str | Path,
        custom: dict[str, str] | None = None,
        chunk_size: int = 1 << 20,
        compression: str = "zstd",
    ) -> None:
        _require_bag("rosbag2 (MCAP) bags")
        from mcap.writer import CompressionType, Writer

        from robot_rl import __version__

        self.path = Path(path)
        if self.path.exists():
            raise DataError(f"bag folder {self.path} already exists (a bag is never appended to)")
        kinds = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
        if compression not in kinds:
            raise DataError(f"bag compression {compression!r}; allowed: {', '.join(kinds)}")
        self.path.mkdir(parents=True)
        self.file_name = f"{self.path.name}.mcap"
        self._file = open(self.path / self.file_name, "xb")  # noqa: SIM115  (closed in close())
        self._writer = Writer(self._file, chunk_size=chunk_size, compression=kinds[compression])
        self._writer.start(profile="ros2", library=f"robot_rl {__version__}")
        self.custom = {CUSTOM_PREFIX + k: str(v) for k, v in (custom or {}).items()}
        if self.custom:
            self._writer.add_metadata("robot_rl", self.custom)
        self._types = _typestore()
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, tuple[int, str]] = {}
        self._qos: dict[str, list[dict[str, Any]]] = {}
        self._counts: dict[str, int] = {}
        self._start: int | None = None
        self._end = 0
        self.closed = False
        self._write_metadata()

    # -- topics and messages --
    def msg(self, msgtype: str, **fields: Any) -> Any:
        """A message object of ``msgtype`` (rosbags' type store) with ``fields``."""
        return self._types.types[msgtype](**fields)

    def add_topic(self, topic: str, msgtype: str, qos: tuple[str, str, int] | None = None) -> None:
        """Register ``topic`` (schema and channel); called by the first write of a topic otherwise.
        ``qos`` = (reliability, durability, depth) of the publisher (default: the contract's)."""
        if topic in self._channels:
            if self._channels[topic][1] != msgtype:
                raise DataError(f"topic {topic}: {msgtype} != {self._channels[topic][1]} written before")
            return
        if msgtype not in self._types.types:
            raise DataError(f"message type {msgtype!r} is unknown to the rosbags type store")
        if msgtype not in self._schemas:
            text, _ = self._types.generate_msgdef(msgtype, ros_version=2)
            self._schemas[msgtype] = self._writer.register_schema(msgtype, "ros2msg", text.encode())
        if qos is None:
            qos = TOPIC_TYPES[topic][1] if topic in TOPIC_TYPES else CAMERA_QOS
        self._qos[topic] = [_qos_profile(*qos)]
        channel = self._writer.register_channel(
            topic,
            "cdr",
            self._schemas[msgtype],
            {
                "offered_qos_profiles": _dump_yaml(self._qos[topic]).strip(),
                "topic_type_hash": self._types.hash_rihs01(msgtype),
            },
        )
        self._channels[topic] = (channel, msgtype)
        self._counts[topic] = 0

    def write_raw(
        self, topic: str, msgtype: str, data: bytes, log_time: int, publish_time: int | None = None
    ) -> None:
        """One serialized (CDR) message received at ``log_time`` (ns since the epoch), published at
        ``publish_time`` (default: ``log_time``)."""
        self.add_topic(topic, msgtype)
        channel, _ = self._channels[topic]
        publish_time = log_time if publish_time is None else publish_time
        self._writer.add_message(channel, log_time=log_time, data=bytes(data), publish_time=publish_time)
        self._counts[topic] += 1
        self._start = log_time if self._start is None else min(self._start, log_time)
        self._end = max(self._end, log_time)

    def write(self, topic: str, msgtype: str, message: Any, log_time: int) -> None:
        """One message object (from :meth:`msg`), CDR-serialized here."""
        self.write_raw(topic, msgtype, bytes(self._types.serialize_cdr(message, msgtype)), log_time)

    # -- durability --
    def flush(self) -> None:
        """Finish the chunk in progress, fsync the file and rewrite ``metadata.yaml``."""
        self._writer.flush()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._write_metadata()

    def close(self) -> None:
        """Summary + footer (indexed MCAP), then the final ``metadata.yaml``. Idempotent."""
        if self.closed:
            return
        self.closed = True
        info = self._metadata()["rosbag2_bagfile_information"]
        self._writer.add_metadata("rosbag2", {"serialized_metadata": _dump_yaml(info)})
        self._writer.finish()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._write_metadata()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _metadata(self) -> dict[str, Any]:
        start = self._start or 0
        duration = max(0, self._end - start)
        count = sum(self._counts.values())
        return {
            "rosbag2_bagfile_information": {
                "version": METADATA_VERSION,
                "storage_identifier": "mcap",
                "duration": {"nanoseconds": duration},
                "starting_time": {"nanoseconds_since_epoch": start},
                "message_count": count,
                "topics_with_message_count": [
                    {
                        "topic_metadata": {
                            "name": topic,
                            "type": msgtype,
                            "serialization_format": "cdr",
                            "offered_qos_profiles": self._qos[topic],
                            "type_description_hash": self._types.hash_rihs01(msgtype),
                        },
                        "message_count": self._counts[topic],
                    }
                    for topic, (_, msgtype) in self._channels.items()
                ],
                "compression_format": "",
                "compression_mode": "",
                "relative_file_paths": [self.file_name],
                "files": [
                    {
                        "path": self.file_name,
                        "starting_time": {"nanoseconds_since_epoch": start},
                        "duration": {"nanoseconds": duration},
                        "message_count": count,
                    }
                ],
                "custom_data": dict(self.custom),
                "ros_distro": "",
            }
        }

    def _write_metadata(self) -> None:
        write_atomic_bytes(self.path / "metadata.yaml", _dump_yaml(self._metadata()).encode())


# --- reading ------------------------------------------------------------------------------------


@dataclass
class BagMessage:
    """One decoded message: receive time (ns), topic, type, the message (attribute access)."""

    log_time: int
    topic: str
    msgtype: str
    msg: Any


@dataclass
class BagContents:
    """What :func:`read_bag` found: messages in receive order, the bag's ``robot_rl.*`` custom data,
    whether every file ended properly, and the problem that stopped reading a file early."""

    path: Path
    messages: list[BagMessage]
    custom: dict[str, str] = field(default_factory=dict)
    complete: bool = True
    problem: str = ""
    topics: dict[str, str] = field(default_factory=dict)  # topic -> message type (all, decoded or not)


class _TruncatedError(Exception):
    pass


class _StrictReader:
    """A file whose short reads raise (mcap's stream reader would take a short read as data)."""

    def __init__(self, f: Any) -> None:
        self.f = f

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        if n is not None and n > 0 and len(data) < n:
            where = "inside a record" if data else "after its last complete record"
            raise _TruncatedError(f"the file ends {where}, before the footer")
        return data


def _bag_files(path: Path) -> tuple[list[Path], dict[str, Any]]:
    """The storage files of a bag folder in order (metadata.yaml's list, else sorted) and its
    metadata (``{}`` when metadata.yaml is missing, as after a killed recording)."""
    import yaml

    if path.is_file():
        return [path], {}
    if not path.is_dir():
        raise DataError(f"{path} is not a rosbag2 bag (no such folder or .mcap file)")
    meta: dict[str, Any] = {}
    meta_path = path / "metadata.yaml"
    if meta_path.is_file():
        try:
            loaded = yaml.safe_load(meta_path.read_text())
            meta = loaded.get("rosbag2_bagfile_information", {}) if isinstance(loaded, dict) else {}
        except (OSError, yaml.YAMLError) as err:
            raise DataError(f"{meta_path}: unreadable rosbag2 metadata ({err})") from err
    names = [Path(str(p)).name for p in meta.get("relative_file_paths") or []]
    files = [path / n for n in names if (path / n).is_file()]
    if not files:
        files = sorted(path.glob("*.mcap")) or sorted(path.glob("*.db3"))
    if not files:
        raise DataError(f"{path} is not a rosbag2 bag (no .mcap or .db3 file, no metadata.yaml)")
    return files, meta


def read_bag(path: str | Path, topics: Callable[[str, str], bool] | None = None) -> BagContents:
    """Decode the messages of the topics ``topics(name, type)`` accepts (all when None) of a bag folder or
    ``.mcap`` file.

    MCAP files are read front to back: a file cut at any byte (a killed recording) yields every
    message of its complete chunks, ``complete`` becomes False and ``problem`` says where it ended.
    ``.db3`` files are read with rosbags (they need their metadata.yaml).
    """
    _require_bag("rosbag2 (MCAP) bags")
    path = Path(path)
    files, meta = _bag_files(path)
    wanted = topics
    custom = {
        k[len(CUSTOM_PREFIX) :]: str(v)
        for k, v in (meta.get("custom_data") or {}).items()
        if str(k).startswith(CUSTOM_PREFIX)
    }
    out = BagContents(path, [], custom)
    for f in files:
        if f.suffix == ".db3":
            _read_db3(path, wanted, out)
            break
        _read_mcap(f, wanted, out)
    out.messages.sort(key=lambda m: m.log_time)  # stable: equal times keep the file order
    return out


def _read_mcap(path: Path, wanted: Callable[[str, str], bool] | None, out: BagContents) -> None:
    from mcap.exceptions import McapError
    from mcap.records import Channel, Footer, Message, Metadata, Schema
    from mcap.stream_reader import StreamReader
    from mcap_ros2.decoder import DecoderFactory

    schemas: dict[int, Schema] = {}
    channels: dict[int, Channel] = {}
    decoders: dict[int, Any] = {}
    factory = DecoderFactory()
    footer = False
    with open(path, "rb") as f:
        magic = f.read(len(_MCAP_MAGIC))
        if magic != _MCAP_MAGIC:
            if _MCAP_MAGIC.startswith(magic):  # killed before the first write reached the disk
                out.complete = False
                out.problem = f"{path.name} is cut at byte {len(magic)} (nothing readable)"
                return
            raise DataError(f"{path} is not an MCAP file (bad magic)")
        f.seek(0)
        reader = StreamReader(_StrictReader(f), validate_crcs=True)  # type: ignore[arg-type]
        try:
            for record in reader.records:
                if isinstance(record, Message):
                    channel = channels.get(record.channel_id)
                    if channel is None or channel.schema_id not in schemas:
                        continue
                    if wanted is not None and not wanted(channel.topic, schemas[channel.schema_id].name):
                        continue
                    decoder = decoders.get(channel.id)
                    if decoder is None:
                        decoder = factory.decoder_for(
                            channel.message_encoding, schemas.get(channel.schema_id)
                        )
                        if decoder is None:
                            raise DataError(f"{path}: topic {channel.topic} is not cdr with a ros2msg schema")
                        decoders[channel.id] = decoder
                    schema = schemas[channel.schema_id]
                    out.messages.append(
                        BagMessage(record.log_time, channel.topic, schema.name, decoder(record.data))
                    )
                elif isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    channels[record.id] = record
                    if record.schema_id in schemas:
                        out.topics[record.topic] = schemas[record.schema_id].name
                elif isinstance(record, Metadata) and record.name == "robot_rl":
                    for k, v in record.metadata.items():
                        if k.startswith(CUSTOM_PREFIX):
                            out.custom.setdefault(k[len(CUSTOM_PREFIX) :], v)
                elif isinstance(record, Footer):
                    footer = True
        except DataError:
            raise
        except (_TruncatedError, McapError, struct.error, ValueError, EOFError) as err:
            out.complete = False
            size = path.stat().st_size
            out.problem = (
                f"{path.name} is cut or damaged at byte {f.tell()} of {size} ({err or type(err).__name__})"
            )
            return
        except Exception as err:  # a damaged compressed chunk (zstd / lz4 errors have no common base)
            out.complete = False
            out.problem = f"{path.name}: damaged chunk near byte {f.tell()} ({type(err).__name__}: {err})"
            return
    if not footer:
        out.complete = False
        out.problem = f"{path.name} has no footer"


def _read_db3(path: Path, wanted: Callable[[str, str], bool] | None, out: BagContents) -> None:
    from rosbags.rosbag2 import Reader

    types = _typestore()
    with Reader(path) as reader:
        for conn in reader.connections:
            out.topics[conn.topic] = conn.msgtype
        conns = [c for c in reader.connections if wanted is None or wanted(c.topic, c.msgtype)]
        for conn, log_time, raw in reader.messages(connections=conns):
            out.messages.append(
                BagMessage(log_time, conn.topic, conn.msgtype, types.deserialize_cdr(raw, conn.msgtype))
            )


# --- import: segmentation and resampling ---------------------------------------------------------


@dataclass(frozen=True)
class ImportOptions:
    """How :func:`bag_to_records` reads a bag.

    Attributes:
        state_topic: JointState topic of the state vector (its ``position``); when the bag lacks it,
            ``/joint_states`` is used.
        joint_names: the state is these joints' positions, in this order (else ``position`` as is).
        cameras: camera names to import from ``/robot_rl/camera/<name>/image_raw`` (``None``: every
            camera topic in the bag, ``()``: none).
        source: the episodes' ``source`` (``""``: the recorder's, from the bag, else ``import:rosbag2``).
        reward_source: ``auto`` (the recorder's setting, or ``sim`` when the bag has rewards, else
            ``none``) or one of the store's reward sources.
        min_steps: shorter episodes are skipped (and counted).
    """

    state_topic: str = STATE_TOPIC
    joint_names: tuple[str, ...] = ()
    cameras: tuple[str, ...] | None = None
    source: str = ""
    reward_source: str = "auto"
    min_steps: int = 1


@dataclass
class ImportReport:
    """What an import did: episodes imported, skipped (with why) and the reading problem, if any."""

    bag: Path
    imported: int = 0
    steps: int = 0
    skipped: list[str] = field(default_factory=list)
    complete: bool = True
    problem: str = ""
    fps: float | None = None
    env_id: str | None = None

    def line(self) -> str:
        """One line for logs and the command line."""
        text = f"{self.bag}: imported {self.imported} episodes ({self.steps} steps)"
        if not self.complete:
            text += f"; the bag is truncated ({self.problem})"
        if self.skipped:
            text += f"; not imported: {'; '.join(self.skipped)}"
        return text


def _ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


@dataclass
class _Stream:
    times: np.ndarray  # int64 ns, non-decreasing
    values: list[Any]

    @classmethod
    def of(cls, items: list[tuple[int, Any]]) -> _Stream:
        return cls(np.array([t for t, _ in items], dtype=np.int64), [v for _, v in items])

    def latest(self, t: int) -> int:
        """Index of the latest item at or before ``t`` (-1: none)."""
        return int(np.searchsorted(self.times, t, side="right")) - 1

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class _Episode:
    first: int  # state index of the first observation
    final: int  # state index of the final observation
    close: int  # ns: the end of the last step's reward window
    reason: str  # end_reason
    terminated: bool
    success: bool | None = None  # set by a teleop success / failure event


def _state_vector(msg: Any, joint_names: Sequence[str]) -> np.ndarray:
    """JointState ``position`` (or those of ``joint_names``, in order; KeyError names a missing one)."""
    if joint_names:
        index = {n: i for i, n in enumerate(msg.name)}
        missing = [n for n in joint_names if n not in index]
        if missing:
            raise KeyError(f"joints {missing} are not in the state messages (they have {list(msg.name)})")
        return np.array([msg.position[index[n]] for n in joint_names], dtype=np.float64)
    return np.asarray(msg.position, dtype=np.float64)


def image_from_msg(msg: Any) -> np.ndarray:
    """sensor_msgs/Image ``rgb8`` / ``bgr8`` (rows possibly padded) -> RGB uint8 ``[H, W, 3]``; raises
    ValueError naming the problem for any other encoding or an inconsistent size. No rclpy needed (the
    policy node uses it too, through ``robot_rl.real.conversions.msg_to_image``)."""
    if msg.encoding not in ("rgb8", "bgr8"):
        raise ValueError(f"image encoding {msg.encoding!r} is not supported (rgb8 or bgr8)")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if step < 3 * w or data.size != h * step:
        raise ValueError(f"image of {h}x{w} with step {step} has {data.size} bytes")
    image = data.reshape(h, step)[:, : 3 * w].reshape(h, w, 3)
    return np.ascontiguousarray(image[..., ::-1] if msg.encoding == "bgr8" else image)


def is_teleop_label(label: str) -> bool:
    """Whether an executed action's source label (``policy``, ``teleop``, ``repeat:<who>``,
    ``hold:<why>``) says a person commanded it."""
    return label.removeprefix("repeat:") == "teleop"


def _source_label(msg: Any) -> str | None:
    for dim in msg.layout.dim:
        if dim.label.startswith("source:"):
            return dim.label[len("source:") :]
    return None


def _segment(
    states: _Stream,
    stamps: np.ndarray,
    boundaries: list[tuple[int, str, Any]],
    complete: bool,
    end_time: int,
) -> tuple[list[_Episode], int]:
    """Episodes as (first, final) state indices from the boundary messages, in receive order; also
    the number of states in the episode left open where a cut bag ends."""
    n = len(states)
    by_stamp: dict[int, int] = {}
    for i, s in enumerate(stamps.tolist()):
        by_stamp.setdefault(int(s), i)
    episodes: list[_Episode] = []
    first: int | None = 0 if n else None  # the open episode's first state (None: waiting for a start)

    def after(t: int) -> int:  # first state received after t
        return int(np.searchsorted(states.times, t, side="right"))

    def close(final: int, t: int, reason: str, terminated: bool = False, success: bool | None = None) -> None:
        nonlocal first
        if first is not None and first <= final < n:
            episodes.append(
                _Episode(first, final, max(t, int(states.times[final])), reason, terminated, success)
            )
        first = None

    for t, kind, payload in boundaries:
        if kind == "start":
            i = by_stamp.get(payload)
            if i is None:  # its observation is not in the bag: the first one stamped after the event
                later = np.flatnonzero(stamps >= payload)
                i = int(later[0]) if later.size else n
                if first is not None and i <= first:
                    continue  # a (latched) start of the episode already in progress
            if first is not None and i > first:
                close(i - 1, min(t, int(states.times[i])) if i < n else t, "reset")
            first = i if i < n else None
        elif kind in ("terminated", "truncated"):
            if first is None:
                continue  # waiting for a start already
            j = by_stamp.get(payload)
            if j is None:  # its observation is not in the bag: the last one stamped before the event,
                # if the open episode has one (else a latched end of an episode never seen: ignored)
                before = np.flatnonzero(stamps[first:] <= payload)
                if not before.size:
                    continue
                j = first + int(before[-1])
            if j >= first:
                close(j, t, kind, terminated=kind == "terminated")
        elif kind in ("end", "discard"):
            if first is None:
                continue  # waiting for a start: nothing in progress (as the recorder)
            reason, success = payload
            if kind == "end":
                close(states.latest(t), t, reason, success=success)
            first = after(t) if after(t) < n else None
        elif kind == "task":
            if first is not None and states.latest(t) >= first:
                close(states.latest(t), t, "task")
            first = after(t) if after(t) < n else None
    left_open = 0
    if first is not None and first < n:
        if complete:
            close(n - 1, end_time, "end_of_bag")
        else:
            left_open = n - first
    return episodes, left_open


def import_topics(topic: str, msgtype: str) -> bool:
    """The topics an import decodes: the contract's, cameras and any JointState (state topics)."""
    prefix, suffix = CAMERA_TOPIC.split("{}")
    return (
        topic in TOPIC_TYPES
        or msgtype == JOINT_STATE
        or (topic.startswith(prefix) and topic.endswith(suffix) and msgtype == IMAGE)
    )


def bag_to_records(
    contents: BagContents, options: ImportOptions | None = None
) -> tuple[list[EpisodeRecord], ImportReport]:
    """The episodes of a read bag (see the module docstring for the rules) and a report."""
    options = options or ImportOptions()
    report = ImportReport(contents.path, complete=contents.complete, problem=contents.problem)
    custom = contents.custom
    by_topic: dict[str, list[BagMessage]] = {}
    for m in contents.messages:
        by_topic.setdefault(m.topic, []).append(m)
    state_topic = options.state_topic
    if state_topic not in by_topic and JOINT_STATES_TOPIC in by_topic and not custom.get("state_topic"):
        state_topic = JOINT_STATES_TOPIC
    if custom.get("state_topic") and options.state_topic == STATE_TOPIC:
        state_topic = custom["state_topic"]
    joint_names = tuple(options.joint_names) or tuple(json.loads(custom.get("joint_names", "[]")))
    if not contents.complete and (state_topic not in by_topic or EXECUTED_TOPIC not in by_topic):
        report.skipped.append("no complete step before the cut")
        return [], report
    if state_topic not in by_topic:
        raise DataError(f"{contents.path}: no state messages on {state_topic} (topics: {sorted(by_topic)})")
    if EXECUTED_TOPIC not in by_topic:
        raise DataError(f"{contents.path}: no {EXECUTED_TOPIC} messages: no control ticks to import")

    state_items, stamp_list, frames = [], [], []
    for m in by_topic[state_topic]:
        try:
            vec = _state_vector(m.msg, joint_names)
        except KeyError as err:
            raise DataError(f"{contents.path}: {str(err).strip(chr(39) + chr(34))}") from err
        state_items.append((m.log_time, vec))
        stamp_list.append(_ns(m.msg.header.stamp))
        frames.append(str(m.msg.header.frame_id))
    states = _Stream.of(state_items)
    stamps = np.array(stamp_list, dtype=np.int64)
    ticks = _Stream.of([(m.log_time, m.msg) for m in by_topic[EXECUTED_TOPIC]])
    proposals = _Stream.of([(m.log_time, m.msg.data) for m in by_topic.get(PROPOSED_TOPIC, [])])
    sources = _Stream.of([(m.log_time, m.msg.data) for m in by_topic.get(SOURCE_TOPIC, [])])
    flags = _Stream.of([(m.log_time, bool(m.msg.data)) for m in by_topic.get(INTERVENTION_TOPIC, [])])
    rewards = _Stream.of([(m.log_time, float(m.msg.data)) for m in by_topic.get(REWARD_TOPIC, [])])
    successes = _Stream.of([(m.log_time, bool(m.msg.data)) for m in by_topic.get(SUCCESS_TOPIC, [])])
    tasks = _Stream.of([(m.log_time, str(m.msg.data)) for m in by_topic.get(TASK_TOPIC, [])])
    prefix, suffix = CAMERA_TOPIC.split("{}")
    in_bag = sorted(
        t[len(prefix) : -len(suffix)] for t in by_topic if t.startswith(prefix) and t.endswith(suffix)
    )
    cameras = in_bag if options.cameras is None else list(options.cameras)
    for cam in cameras:
        if cam not in in_bag:
            raise DataError(
                f"{contents.path}: no images of camera {cam!r} ({CAMERA_TOPIC.format(cam)}); bag has {in_bag}"
            )
    images = {
        cam: _Stream.of([(m.log_time, m.msg) for m in by_topic[CAMERA_TOPIC.format(cam)]]) for cam in cameras
    }
    infos: dict[int, dict[str, Any]] = {}
    for m in by_topic.get(EPISODE_INFO_TOPIC, []):
        with contextlib.suppress(json.JSONDecodeError, TypeError, KeyError):
            info = json.loads(m.msg.data)
            infos[int(info["final_stamp_ns"])] = info

    boundaries: list[tuple[int, str, Any]] = []
    for m in by_topic.get(EVENT_TOPIC, []):
        boundaries.append((m.log_time, m.msg.frame_id, _ns(m.msg.stamp)))
    recorder_events = by_topic.get(RECORDER_EVENT_TOPIC, [])
    for m in recorder_events:
        if m.msg.data in ("end_episode", "discard"):
            kind = "end" if m.msg.data == "end_episode" else "discard"
            boundaries.append((m.log_time, kind, ("end_episode", None)))
    if RECORDER_EVENT_TOPIC not in contents.topics:  # the recorder acted on the teleop events itself
        for m in by_topic.get(TELEOP_EVENT_TOPIC, []):
            event = m.msg.data
            if event in ("success", "failure", "end"):
                success = {"success": True, "failure": False}.get(event)
                boundaries.append((m.log_time, "end", (f"teleop:{event}", success)))
            elif event == "rerecord":
                boundaries.append((m.log_time, "discard", (f"teleop:{event}", None)))
    if EVENT_TOPIC not in by_topic:
        previous = None
        for t, text in zip(tasks.times.tolist(), tasks.values):
            if text != previous:
                boundaries.append((t, "task", text))
            previous = text
    boundaries.sort(key=lambda b: b[0])
    unknown = sorted(
        {k for _, k, _ in boundaries} - {"start", "terminated", "truncated", "end", "discard", "task"}
    )
    end_time = contents.messages[-1].log_time if contents.messages else 0
    episodes, left_open = _segment(
        states, stamps, [b for b in boundaries if b[1] not in unknown], contents.complete, end_time
    )
    if left_open:
        report.skipped.append(f"the unfinished last episode ({left_open} observations)")

    reward_source = options.reward_source
    if reward_source == "auto":
        reward_source = custom.get("reward_source", "sim" if len(rewards) else "none")
    if not len(rewards):
        reward_source = "none"
    source = options.source or custom.get("source") or "import:rosbag2"
    records: list[EpisodeRecord] = []
    short = 0
    for ep in episodes:
        t0, t1 = int(states.times[ep.first]), int(states.times[ep.final])
        lo = int(np.searchsorted(ticks.times, t0, side="left"))
        hi = int(np.searchsorted(ticks.times, t1, side="left"))
        T = hi - lo
        if options.min_steps > T:
            short += T > 0  # a stretch without a single control tick is no episode
            continue
        tick_times = ticks.times[lo:hi].tolist()
        closes = [*tick_times[1:], ep.close]
        actions, proposed, labels, is_int = [], [], [], []
        rew = np.zeros(T, dtype=np.float32)
        missing = replaced = 0
        obs_idx = []
        for k, t in enumerate(tick_times):
            msg = ticks.values[lo + k]
            a = np.asarray(msg.data, dtype=np.float32)
            actions.append(a)
            label = _source_label(msg)
            if label is None:
                j = int(np.searchsorted(sources.times, t, side="left"))
                if j < len(sources) and sources.times[j] <= closes[k]:
                    label = sources.values[j]
            labels.append(label)
            flag_i = flags.latest(t)
            is_int.append(
                is_teleop_label(label) if label is not None else (flag_i >= 0 and flags.values[flag_i])
            )
            p_i = proposals.latest(t)
            p = np.asarray(proposals.values[p_i], dtype=np.float32) if p_i >= 0 else None
            if p is None or p.shape != a.shape or not np.all(np.isfinite(p)):
                replaced += p is not None
                p = a
            proposed.append(p)
            r_i = rewards.latest(closes[k])
            if r_i >= 0 and rewards.times[r_i] > t:
                rew[k] = rewards.values[r_i]
            else:
                missing += 1
            obs_idx.append(states.latest(t))
        # the episode starts at its own first observation (the sim bridge's reset one), even when the
        # first executed action was logged before it arrived (lockstep delivery race): never a state of
        # the episode before
        if obs_idx:
            obs_idx[0] = ep.first
        if any(a.shape != actions[0].shape for a in actions):
            report.skipped.append(f"episode ending at {ep.close} ns: actions of different lengths")
            continue
        obs = {STATE_KEY: np.stack([states.values[i] for i in [*obs_idx, ep.final]])}
        image_problem = ""
        for cam, stream in images.items():
            idx = [stream.latest(t) for t in [*tick_times, ep.close]]
            if idx[0] < 0:
                image_problem = f"no {cam!r} image before its first step"
                break
            try:
                obs[PIXELS_PREFIX + cam] = np.stack([image_from_msg(stream.values[i]) for i in idx])
            except ValueError as err:
                image_problem = f"camera {cam!r}: {err}"
                break
        if image_problem:
            report.skipped.append(f"episode ending at {ep.close} ns: {image_problem}")
            continue
        terminated, truncated = np.zeros(T, dtype=bool), np.zeros(T, dtype=bool)
        (terminated if ep.terminated else truncated)[-1] = True
        s_i = successes.latest(ep.close)
        success = ep.success if ep.success is not None else bool(s_i >= 0 and successes.values[s_i])
        task_i = tasks.latest(tick_times[0])
        fields: dict[str, Any] = {
            "is_demo": np.zeros(T, dtype=bool),
            "reward_source": reward_source,
            "source": source,
            "success": success,
            "metadata": {
                "rosbag2": contents.path.name,
                "end_reason": ep.reason,
                "obs_stamps": [float(stamps[obs_idx[0]]) * 1e-9, float(stamps[ep.final]) * 1e-9],
                "log_time_ns": [tick_times[0], ep.close],
                "command_source": [lab or "" for lab in labels],
                "missing_rewards": missing,
                "replaced_proposals": replaced,
            },
        }
        start_frame = frames[ep.first]  # the sim bridge's first observation: episode_start:<reset seed>
        if start_frame.startswith("episode_start:") and start_frame[len("episode_start:") :].isdigit():
            fields["metadata"]["seed"] = int(start_frame[len("episode_start:") :])
        info = infos.get(int(stamps[ep.final]))
        if info is not None and info.get("length") == T:  # written by export_bag: the exact extras
            for name in ("is_demo", "terminated", "truncated"):
                flags_k = np.zeros(T, dtype=bool)
                flags_k[np.asarray(info[name], dtype=np.int64)] = True
                fields[name] = flags_k
            terminated, truncated = fields.pop("terminated"), fields.pop("truncated")
            for name in ("reward_source", "source", "success", "metadata"):
                fields[name] = info[name]
        try:
            record = EpisodeRecord(
                observations=obs,
                actions=np.stack(actions),
                proposed_actions=np.stack(proposed),
                rewards=rew,
                terminated=terminated,
                truncated=truncated,
                is_intervention=np.array(is_int, dtype=bool),
                task=tasks.values[task_i] if task_i >= 0 else "",
                **fields,
            )
        except DataError as err:
            report.skipped.append(f"episode ending at {ep.close} ns: {err}")
            continue
        records.append(record)
    if short:
        report.skipped.append(f"{short} episodes shorter than {options.min_steps} steps")
    report.imported = len(records)
    report.steps = sum(r.length for r in records)
    fps = custom.get("fps")
    report.fps = float(fps) if fps else None
    report.env_id = custom.get("env_id") or None
    return records, report


def import_bag(
    bag: str | Path,
    store: str | Path | EpisodeStore,
    options: ImportOptions | None = None,
    fps: float | None = None,
    env_id: str | None = None,
) -> ImportReport:
    """Append the episodes of ``bag`` to the episode store ``store`` (created when missing; its fps
    and env id from the arguments, else from the bag's recorder). Returns the report."""
    contents = read_bag(bag, import_topics)
    records, report = bag_to_records(contents, options)
    if not isinstance(store, EpisodeStore):
        store = EpisodeStore(
            store,
            create=True,
            fps=fps if fps is not None else report.fps,
            env_id=env_id if env_id is not None else report.env_id,
        )
    for record in records:
        store.append(record)
    return report


def load_bag_records(bag: str | Path, options: ImportOptions | None = None) -> list[EpisodeRecord]:
    """The episodes of ``bag`` in memory (``demos.path=<bag>``); the report goes to the log."""
    import logging

    records, report = bag_to_records(read_bag(bag, import_topics), options)
    logging.getLogger(__name__).info(report.line())
    return records


# --- export ------------------------------------------------------------------------------------

# offsets (ns) inside one control period of the export timeline, in publishing order (the sim
# bridge's order: observation, its images, the previous step's reward and success; then the
# proposal, the takeover flag, the executed action and its source)
_OFF_STATE, _OFF_IMAGE, _OFF_REWARD, _OFF_SUCCESS = 0, 1_000, 2_000, 3_000
_OFF_PROPOSED, _OFF_FLAG, _OFF_EXECUTED, _OFF_SOURCE = 4_000, 5_000, 6_000, 7_000
_OFF_EVENT, _OFF_INFO = 8_000, 9_000


def _indices(flags: np.ndarray) -> list[int]:
    return [int(i) for i in np.flatnonzero(flags)]


def export_bag(
    store: EpisodeStore | str | Path,
    out: str | Path,
    fps: float | None = None,
    start_time_ns: int | None = None,
    indices: Sequence[int] | None = None,
    chunk_size: int = 1 << 20,
) -> Path:
    """Write the episodes of ``store`` as a rosbag2 MCAP bag folder ``out`` (must not exist).

    Each episode runs on a timeline at ``fps`` (default: the store's, else 10 Hz) from
    ``start_time_ns`` (default: now), one second between episodes: per step the state
    (JointState ``state_<i>`` on ``/robot_rl/observation/state``, header stamp = its time), camera
    images (``rgb8``), the previous step's reward and success, the proposed action, the
    intervention flag, the executed action (``source:<policy|teleop|...>`` label) and its source;
    the task and the ``start`` event before the first observation, the ``terminated`` /
    ``truncated`` event and ``/robot_rl/episode_info`` after the final one.
    """
    if not isinstance(store, EpisodeStore):
        store = EpisodeStore(store)
    fps = fps or store.fps or DEFAULT_EXPORT_FPS
    if not fps > 0:
        raise DataError(f"export fps must be > 0, got {fps}")
    period = round(1e9 / fps)
    if period <= _OFF_INFO:
        raise DataError(f"export fps {fps} is too high (a period must be longer than 10 us)")
    custom = {"exported_from": str(store.root)}
    if store.fps is not None:
        custom["fps"] = repr(float(store.fps))
    if store.env_id:
        custom["env_id"] = store.env_id
    base = time.time_ns() if start_time_ns is None else int(start_time_ns)
    with BagWriter(out, custom=custom, chunk_size=chunk_size) as w:
        m = w.msg

        def stamp(t: int) -> Any:
            return m("builtin_interfaces/msg/Time", sec=t // 1_000_000_000, nanosec=t % 1_000_000_000)

        def header(t: int, frame: str = "") -> Any:
            return m(HEADER, stamp=stamp(t), frame_id=frame)

        def array(values: np.ndarray, label: str = "") -> Any:
            dims = [m("std_msgs/msg/MultiArrayDimension", label=label, size=len(values), stride=len(values))]
            layout = m("std_msgs/msg/MultiArrayLayout", dim=dims if label else [], data_offset=0)
            return m(FLOAT32_ARRAY, layout=layout, data=np.asarray(values, dtype=np.float32))

        empty = np.zeros(0, dtype=np.float64)
        for index in range(len(store)) if indices is None else indices:
            ep = store[index]
            extra = sorted(k for k in ep.observations if k != STATE_KEY and not k.startswith(PIXELS_PREFIX))
            if STATE_KEY not in ep.observations or extra:
                raise DataError(
                    f"episode {index}: observation keys {extra or ['(no state)']} have no rosbag2 topic "
                    "(state and pixels/<camera> only)"
                )
            states = ep.observations[STATE_KEY].reshape(ep.length + 1, -1).astype(np.float64)
            names = [f"state_{i}" for i in range(states.shape[1])]
            cams = sorted(k[len(PIXELS_PREFIX) :] for k in ep.observations if k.startswith(PIXELS_PREFIX))
            labels = list(ep.metadata.get("command_source") or [])
            T = ep.length
            w.write(TASK_TOPIC, STRING, m(STRING, data=ep.task), base - 2_000)
            w.write(EVENT_TOPIC, HEADER, header(base, "start"), base - 1_000)
            for k in range(T + 1):
                t = base + k * period
                js = m(
                    JOINT_STATE,
                    header=header(t),
                    name=names,
                    position=states[k],
                    velocity=empty,
                    effort=empty,
                )
                w.write(STATE_TOPIC, JOINT_STATE, js, t + _OFF_STATE)
                for cam in cams:
                    frame = np.ascontiguousarray(ep.observations[PIXELS_PREFIX + cam][k])
                    h, wd = frame.shape[:2]
                    img = m(
                        IMAGE,
                        header=header(t, f"{cam}_camera"),
                        height=h,
                        width=wd,
                        encoding="rgb8",
                        is_bigendian=0,
                        step=3 * wd,
                        data=frame.reshape(-1),
                    )
                    w.write(CAMERA_TOPIC.format(cam), IMAGE, img, t + _OFF_IMAGE)
                if k > 0:
                    w.write(REWARD_TOPIC, FLOAT32, m(FLOAT32, data=float(ep.rewards[k - 1])), t + _OFF_REWARD)
                    done_success = ep.success if k == T else False
                    w.write(SUCCESS_TOPIC, BOOL, m(BOOL, data=bool(done_success)), t + _OFF_SUCCESS)
                if k == T:
                    kind = "terminated" if ep.terminated[-1] else "truncated"
                    w.write(EVENT_TOPIC, HEADER, header(t, kind), t + _OFF_EVENT)
                    info = {
                        "final_stamp_ns": t,
                        "length": T,
                        "is_demo": _indices(ep.is_demo),
                        "terminated": _indices(ep.terminated),
                        "truncated": _indices(ep.truncated),
                        "reward_source": ep.reward_source,
                        "source": ep.source,
                        "success": ep.success,
                        "metadata": ep.metadata,
                    }
                    w.write(EPISODE_INFO_TOPIC, STRING, m(STRING, data=json.dumps(info)), t + _OFF_INFO)
                    break
                # the label carries is_intervention exactly: teleop iff the step is an intervention
                label = (labels[k] if k < len(labels) else "") or "policy"
                if ep.is_intervention[k] and not is_teleop_label(label):
                    label = "teleop"
                elif not ep.is_intervention[k] and is_teleop_label(label):
                    label = "policy"
                w.write(PROPOSED_TOPIC, FLOAT32_ARRAY, array(ep.proposed_actions[k]), t + _OFF_PROPOSED)
                w.write(INTERVENTION_TOPIC, BOOL, m(BOOL, data=bool(ep.is_intervention[k])), t + _OFF_FLAG)
                w.write(
                    EXECUTED_TOPIC, FLOAT32_ARRAY, array(ep.actions[k], f"source:{label}"), t + _OFF_EXECUTED
                )
                w.write(SOURCE_TOPIC, STRING, m(STRING, data=label), t + _OFF_SOURCE)
            w.flush()
            base += (T + 1) * period + 1_000_000_000
    return Path(out)


def iter_topics_summary(contents: BagContents) -> Iterator[tuple[str, str, int]]:
    """(topic, type, decoded message count) of a read bag, sorted by topic."""
    counts: dict[str, int] = {}
    for m in contents.messages:
        counts[m.topic] = counts.get(m.topic, 0) + 1
    for topic in sorted(set(contents.topics) | set(counts)):
        yield topic, contents.topics.get(topic, "?"), counts.get(topic, 0)


__all__ = [
    "BagContents",
    "BagMessage",
    "BagWriter",
    "ImportOptions",
    "ImportReport",
    "bag_to_records",
    "export_bag",
    "import_bag",
    "is_bag",
    "load_bag_records",
    "read_bag",
]
