"""The actor/learner link: episodes flow from an actor process to a learner process, weights back.

Transport: ``multiprocessing.connection`` over TCP (HMAC handshake with ``authkey``), bytes only — the
messages are JSON + safetensors (:func:`robot_rl.core.serialization.tree_to_bytes`), never pickle.

Delivery is exactly-once into the learner's *durable* state:
- the actor numbers every episode (``seq`` 0, 1, ...) and writes it to its spool folder (one atomic file
  each) before sending, so an episode survives a dead learner and a restarted actor;
- the learner inserts an episode once (it skips ``seq`` it already has) and, after each checkpoint,
  acknowledges "everything through ``seq`` is in my checkpoint"; the actor then deletes those files;
- on (re)connection the learner's hello carries its durable ``seq`` (from its checkpoint); the actor
  resends everything after it. A learner killed between checkpoints therefore gets the episodes it
  lost again, and the actor never waits for it: it keeps acting on the last weights it received.
Back-pressure: at most ``max_in_memory`` unacknowledged episodes are cached in memory; older ones are
re-read from disk when they must be resent (``spilled`` counts them). Nothing is dropped.

Message kinds (first byte): ``H`` hello (learner -> actor, JSON ``{"durable": seq}``), ``E`` episode
(8-byte seq + tree), ``W`` weights (tree), ``A`` ack (JSON ``{"through": seq}``).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from robot_rl.core.serialization import tree_from_bytes, tree_to_bytes, write_atomic_bytes


def parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


class Outbox:
    """The actor's unacknowledged episodes: every one on disk, the newest ``max_in_memory`` also in memory."""

    def __init__(self, spool_dir: str | Path, max_in_memory: int = 64):
        self.dir = Path(spool_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_in_memory = int(max_in_memory)
        self.memory: OrderedDict[int, bytes] = OrderedDict()
        self.lock = threading.Lock()
        on_disk = self.pending()
        self.next_seq = on_disk[-1] + 1 if on_disk else 0  # an actor restart continues the numbering
        self.spilled = 0
        self.acked_through = -1

    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq:012d}.episode"

    def pending(self) -> list[int]:
        """Sequence numbers of every unacknowledged episode, in order."""
        return sorted(int(p.stem) for p in self.dir.glob("*.episode"))

    def put(self, payload: bytes) -> int:
        with self.lock:
            seq = self.next_seq
            self.next_seq += 1
            write_atomic_bytes(self._path(seq), payload)  # durable before anything is sent
            self.memory[seq] = payload
            while len(self.memory) > self.max_in_memory:
                self.memory.popitem(last=False)
                self.spilled += 1
            return seq

    def get(self, seq: int) -> bytes:
        with self.lock:
            cached = self.memory.get(seq)
        return cached if cached is not None else self._path(seq).read_bytes()

    def ack(self, through: int) -> None:
        with self.lock:
            self.acked_through = max(self.acked_through, through)
            for seq in [s for s in self.memory if s <= through]:
                del self.memory[seq]
        for seq in self.pending():
            if seq <= through:
                self._path(seq).unlink(missing_ok=True)


class ActorLink:
    """Background thread: (re)connects to the learner, sends unacknowledged episodes in order, takes
    weights and acks. ``latest_weights()`` returns new weights once (or None)."""

    def __init__(self, address: str, authkey: str, outbox: Outbox, retry_s: float = 0.5):
        self.address, self.authkey, self.outbox, self.retry_s = (
            parse_address(address),
            authkey,
            outbox,
            retry_s,
        )
        self._weights: Any = None
        self._weights_lock = threading.Lock()
        self._stop = threading.Event()
        self.connected = False
        self.connections = 0
        self.sent = 0  # episode messages written to a connection (resends included)
        self.resent = 0  # of those, episodes sent before (to a learner that lost them)
        self._max_sent = -1
        self._thread = threading.Thread(target=self._run, name="actor-link", daemon=True)

    def start(self) -> ActorLink:
        self._thread.start()
        return self

    def latest_weights(self) -> Any:
        with self._weights_lock:
            weights, self._weights = self._weights, None
        return weights

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn = Client(self.address, authkey=self.authkey.encode())
            except OSError:
                time.sleep(self.retry_s)
                continue
            try:
                self._serve(conn)
            except (OSError, EOFError, ValueError):
                pass  # the learner went away: keep acting, reconnect
            finally:
                self.connected = False
                conn.close()

    def _serve(self, conn: Connection) -> None:
        hello = conn.recv_bytes()
        if hello[:1] != b"H":
            raise ValueError("the learner did not say hello")
        durable = int(json.loads(hello[1:])["durable"])
        self.outbox.ack(durable)
        self.connected, self.connections = True, self.connections + 1
        next_seq = durable + 1
        while not self._stop.is_set():
            for seq in [s for s in self.outbox.pending() if s >= next_seq]:
                conn.send_bytes(b"E" + seq.to_bytes(8, "big") + self.outbox.get(seq))
                self.sent += 1
                self.resent += int(seq <= self._max_sent)
                self._max_sent = max(self._max_sent, seq)
                next_seq = seq + 1
            while conn.poll(0.02):
                self._receive(conn.recv_bytes())

    def _receive(self, message: bytes) -> None:
        kind, body = message[:1], message[1:]
        if kind == b"W":
            with self._weights_lock:
                self._weights = tree_from_bytes(body)
        elif kind == b"A":
            self.outbox.ack(int(json.loads(body)["through"]))


class LearnerLink:
    """Serves one actor at a time on ``address``: hello with the durable seq, then episodes in, weights
    and acks out. ``next_episode(timeout)`` -> ``(seq, tree)`` or None."""

    def __init__(self, address: str, authkey: str, durable: int):
        self.listener = Listener(parse_address(address), authkey=authkey.encode())
        self.durable = durable
        self.conn: Connection | None = None
        self.weights: bytes | None = None
        self.received = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="learner-link", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn = self.listener.accept()
            except (OSError, EOFError, ValueError):  # closed, or a client that failed the handshake
                continue
            with self._lock:
                if self.conn is not None:
                    self.conn.close()
                self.conn = conn
                try:
                    conn.send_bytes(b"H" + json.dumps({"durable": self.durable}).encode())
                    if self.weights is not None:
                        conn.send_bytes(b"W" + self.weights)
                except OSError:
                    self.conn = None

    def _send(self, message: bytes) -> None:
        with self._lock:
            if self.conn is None:
                return
            try:
                self.conn.send_bytes(message)
            except OSError:
                self.conn = None

    def publish_weights(self, tree: Any) -> None:
        self.weights = tree_to_bytes(tree)
        self._send(b"W" + self.weights)

    def ack(self, through: int) -> None:
        self.durable = through
        self._send(b"A" + json.dumps({"through": through}).encode())

    def next_episode(self, timeout: float) -> tuple[int, Any] | None:
        with self._lock:
            conn = self.conn
        if conn is None:
            time.sleep(timeout)
            return None
        try:
            if not conn.poll(timeout):
                return None
            message = conn.recv_bytes()
        except (OSError, EOFError):
            with self._lock:
                if self.conn is conn:
                    self.conn = None
            return None
        if message[:1] != b"E":
            return None
        self.received += 1
        return int.from_bytes(message[1:9], "big"), tree_from_bytes(message[9:])

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if self.conn is not None:
                self.conn.close()
        self.listener.close()
