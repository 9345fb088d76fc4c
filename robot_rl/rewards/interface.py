"""The one reward-model interface (ALGORITHMS.md §11.11): request in, result out.

Every scoring back-end (``vlm`` and the ones still to come: classifier, stand-in) takes a
:class:`RewardRequest` and returns a :class:`RewardResult`. A result whose ``parse_ok`` is False
means "unknown": it carries no usable reward and must not be trained on. Back-ends never raise
into the caller for bad model output; they raise only for bad requests or setup errors (a missing
checkpoint directory), with a one-line message.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

MODES = ("terminal", "prefix")
Mode = Literal["terminal", "prefix"]

# RoboReward's 1..5 score -> progress in [0, 1] (LeRobot's ``score_to_reward`` default).
DEFAULT_SCORE_TO_PROGRESS: dict[int, float] = {1: 0.0, 2: 0.25, 3: 0.5, 4: 0.75, 5: 1.0}


@dataclass(frozen=True)
class RewardRequest:
    """What to score.

    Args:
        frames: uint8 ``[T, H, W, 3]``, the episode (``mode="terminal"``) or its prefix 0..t_end
            (``mode="prefix"``); T may be 0 (the result is then flagged, not raised).
        task: the natural-language instruction of the episode.
        mode: ``"terminal"`` (judge the finished episode) or ``"prefix"`` (a partial episode,
            used for potential-based shaping).
        fps: frame rate of ``frames`` (for frame timestamps and fps-based sampling).
        episode_id: caller's id, echoed back so asynchronous results can be matched.
        t_end: index of the last step covered by ``frames`` (defaults to ``T - 1``).
        camera_key: which camera the frames come from (bookkeeping only).
    """

    frames: np.ndarray
    task: str
    mode: Mode = "terminal"
    fps: float = 10.0
    episode_id: str = ""
    t_end: int | None = None
    camera_key: str = ""

    def __post_init__(self) -> None:
        frames = self.frames
        if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
            shape = getattr(frames, "shape", type(frames).__name__)
            raise ValueError(f"frames must be a uint8 array [T, H, W, 3], got {shape}")
        if frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {frames.dtype}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")


@dataclass(frozen=True)
class RewardResult:
    """One scored request. ``progress``/``success`` are meaningful only when ``parse_ok``.

    ``score_raw`` is the model-native discrete score (1..5 for RoboReward) or None when it could
    not be read; ``error`` says why when ``parse_ok`` is False (``"parse"``, ``"empty"``,
    ``"timeout"``, ``"model"``: the short reason, details in ``raw_text``).
    """

    score_raw: int | None
    progress: float
    success: bool
    success_prob: float
    parse_ok: bool
    raw_text: str
    model_id: str
    model_revision: str
    prompt_hash: str
    frames_used: list[int] = field(default_factory=list)
    latency_ms: float = 0.0
    episode_id: str = ""
    mode: Mode = "terminal"
    error: str = ""

    @property
    def usable(self) -> bool:
        """True when this result may be used as a reward."""
        return self.parse_ok


def failed_result(
    req: RewardRequest,
    *,
    error: str,
    raw_text: str,
    model_id: str,
    model_revision: str,
    prompt_hash: str,
    frames_used: Sequence[int] = (),
    started: float | None = None,
) -> RewardResult:
    """A flagged "unknown" result (progress 0, not a success, never to be trained on)."""
    latency = (time.perf_counter() - started) * 1e3 if started is not None else 0.0
    return RewardResult(
        score_raw=None,
        progress=0.0,
        success=False,
        success_prob=0.0,
        parse_ok=False,
        raw_text=raw_text,
        model_id=model_id,
        model_revision=model_revision,
        prompt_hash=prompt_hash,
        frames_used=list(frames_used),
        latency_ms=latency,
        episode_id=req.episode_id,
        mode=req.mode,
        error=error,
    )


@runtime_checkable
class RewardModel(Protocol):
    """A scoring back-end. ``score_batch`` returns one result per request, in order."""

    model_id: str

    def score(self, req: RewardRequest) -> RewardResult: ...

    def score_batch(self, reqs: Sequence[RewardRequest]) -> list[RewardResult]: ...
