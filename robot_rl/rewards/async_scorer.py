"""Score episodes in the background so the control loop never waits for a reward model.

:class:`AsyncRewardScorer` wraps any :class:`~robot_rl.rewards.interface.RewardModel`: ``submit``
queues a request and returns at once (``False`` when the bounded queue is full — the caller keeps
the episode pending and may retry; nothing blocks); one worker thread scores queued requests in
batches (``score_batch``); ``poll`` hands back the finished results in completion order. A model
that raises, or a result that arrives after ``timeout_s`` measured from submission, becomes a flagged
result (``parse_ok = False``, ``error = "model"`` / ``"timeout"``): it is returned like any other so
the caller can release the episode, and it is never a usable reward. Nothing raises into the caller
after construction except bad arguments.

Counters (for metrics): ``submitted``, ``completed``, ``rejected`` (queue full), ``failed``
(flagged results of any kind).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import replace

from robot_rl.rewards.interface import RewardModel, RewardRequest, RewardResult, failed_result


class AsyncRewardScorer:
    """Background scoring with a bounded queue (see the module docstring).

    Args:
        model: the reward model (its ``score_batch`` runs on the worker thread only).
        max_pending: requests that may wait in the queue (``submit`` returns False beyond it).
        batch_size: most requests handed to one ``score_batch`` call.
        timeout_s: > 0: a result later than this after its ``submit`` is replaced by a flagged
            ``"timeout"`` result (the model call itself is not interrupted).
    """

    def __init__(
        self, model: RewardModel, max_pending: int = 64, batch_size: int = 4, timeout_s: float = 0.0
    ):
        if max_pending < 1 or batch_size < 1:
            raise ValueError(f"max_pending and batch_size must be >= 1, got {max_pending}, {batch_size}")
        if timeout_s < 0:
            raise ValueError(f"timeout_s must be >= 0, got {timeout_s}")
        self.model, self.batch_size, self.timeout_s = model, batch_size, timeout_s
        self._todo: queue.Queue[tuple[RewardRequest, float] | None] = queue.Queue(maxsize=max_pending)
        self._done: queue.Queue[RewardResult] = queue.Queue()
        self.submitted = self.completed = self.rejected = self.failed = 0
        self._lock = threading.Lock()  # the counters the worker writes
        self._worker = threading.Thread(target=self._run, name="reward-scorer", daemon=True)
        self._worker.start()

    def submit(self, req: RewardRequest) -> bool:
        """Queue ``req`` for scoring without blocking; False (and counted) when the queue is full."""
        try:
            self._todo.put_nowait((req, time.perf_counter()))
        except queue.Full:
            self.rejected += 1
            return False
        self.submitted += 1
        return True

    def poll(self) -> list[RewardResult]:
        """Every result finished since the last call (never blocks)."""
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    @property
    def pending(self) -> int:
        """Submitted requests not scored yet (approximate while the worker runs)."""
        return self.submitted - self.completed

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker after the queued requests (waits up to ``timeout`` seconds)."""
        try:
            self._todo.put(None, timeout=timeout)
        except queue.Full:
            return
        self._worker.join(timeout)

    def __enter__(self) -> AsyncRewardScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- worker ---

    def _run(self) -> None:
        while True:
            item = self._todo.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.batch_size:
                try:
                    nxt = self._todo.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:  # finish this batch, then stop
                    self._score(batch)
                    return
                batch.append(nxt)
            self._score(batch)

    def _score(self, batch: list[tuple[RewardRequest, float]]) -> None:
        reqs = [req for req, _ in batch]
        try:
            results = list(self.model.score_batch(reqs))
            if len(results) != len(reqs):
                raise RuntimeError(f"score_batch returned {len(results)} results for {len(reqs)} requests")
        except Exception as err:  # any model failure: a flagged result, never an exception in the loop
            results = [self._flagged(req, "model", f"{type(err).__name__}: {err}") for req in reqs]
        now = time.perf_counter()
        for (req, submitted_at), res in zip(batch, results, strict=True):
            if self.timeout_s > 0 and now - submitted_at > self.timeout_s and res.parse_ok:
                res = self._flagged(req, "timeout", res.raw_text)
            res = replace(res, latency_ms=(now - submitted_at) * 1e3)
            with self._lock:
                self.completed += 1
                self.failed += int(not res.parse_ok)
            self._done.put(res)

    def _flagged(self, req: RewardRequest, error: str, text: str) -> RewardResult:
        return failed_result(
            req,
            error=error,
            raw_text=text,
            model_id=getattr(self.model, "model_id", type(self.model).__name__),
            model_revision=getattr(self.model, "model_revision", ""),
            prompt_hash="",
        )
