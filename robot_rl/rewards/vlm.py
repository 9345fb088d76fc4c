"""``vlm``: a RoboReward-style reward model around a local transformers Qwen3-VL checkpoint.

The model watches the (sampled) frames of an episode with the task instruction and answers
``ANSWER: k``, k in 1..5, judged on the final state (ALGORITHMS.md §8(c), §11.11). The prompt,
parser, score mapping and frame sampling are pure functions below; :class:`VLMReward` adds the
loader (local directory only, ``local_files_only``) and greedy generation.

transformers/torchvision (extra ``vlm``) are imported only when a model is loaded.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.core.optional import require
from robot_rl.core.validation import check
from robot_rl.rewards import REWARDS
from robot_rl.rewards.interface import (
    DEFAULT_SCORE_TO_PROGRESS,
    RewardRequest,
    RewardResult,
    failed_result,
)

# Paraphrase of the RoboReward model-card rubric (ALGORITHMS.md §8(c)); for a released
# RoboReward checkpoint put the card's exact text in ``VLMRewardConfig.prompt_template``.
# ``{task}`` is replaced by the instruction.
ROBOREWARD_PROMPT = (
    "Given the task, assign a discrete progress score reflecting how far the robot in the video "
    "has progressed towards completing the task. Judge only the final state shown in the video, "
    "without considering time limits. Score on this rubric:\n"
    "1 - No progress: no goal-relevant change happened.\n"
    "2 - Minimal progress: a small goal-relevant change, but far from sufficient.\n"
    "3 - Partial completion: good progress, but one major requirement (or several requirements) "
    "is violated.\n"
    "4 - Near completion: correct region and intent, but a single minor requirement is missed.\n"
    "5 - Perfect completion: every requirement of the task is satisfied.\n"
    "Reply with the score in the format: ANSWER: <score>\n"
    "Task: {task}"
)

_ANSWER_RE = re.compile(r"ANSWER\s*:\s*\**\s*([0-9]+)", re.IGNORECASE)


# ----------------------------------------------------------------------------- pure functions
def build_prompt(task: str, template: str = ROBOREWARD_PROMPT) -> str:
    """The rubric prompt for one instruction (surrounding whitespace of ``task`` stripped)."""
    if "{task}" not in template:
        raise ValueError("prompt template must contain '{task}'")
    return template.replace("{task}", task.strip())


def prompt_hash(template: str) -> str:
    """Short stable hash of the prompt template (stored with every reward for auditing)."""
    return hashlib.sha256(template.encode("utf-8")).hexdigest()[:16]


def parse_answer(text: str) -> int | None:
    """The score k in 1..5 from model output ``"... ANSWER: k"``, or None when it cannot be read.

    Strict on purpose (a parse failure is "unknown", never a default score): the last
    ``ANSWER: <number>`` wins (case-insensitive, optional markdown ``**``); a number outside 1..5
    (``ANSWER: 7``, ``ANSWER: 45``) or no ``ANSWER:`` at all gives None.
    """
    if not isinstance(text, str):
        return None
    matches = _ANSWER_RE.findall(text)
    if not matches:
        return None
    value = int(matches[-1])
    return value if 1 <= value <= 5 else None


def score_to_progress(score: int, table: Mapping[int, float] = DEFAULT_SCORE_TO_PROGRESS) -> float:
    """Map a 1..5 score to progress in [0, 1] (default 1→0, 2→.25, 3→.5, 4→.75, 5→1)."""
    if score not in table:
        raise ValueError(f"score must be one of {sorted(table)}, got {score}")
    return float(table[score])


def progress_table(values: Sequence[float]) -> dict[int, float]:
    """``(p1, .., p5)`` -> ``{1: p1, .., 5: p5}``; values must lie in [0, 1] and not decrease."""
    values = [float(v) for v in values]
    if len(values) != 5:
        raise ValueError(f"progress table needs 5 values (scores 1..5), got {len(values)}")
    if any(not 0.0 <= v <= 1.0 for v in values) or any(b < a for a, b in itertools.pairwise(values)):
        raise ValueError(f"progress table must be non-decreasing in [0, 1], got {values}")
    return {k + 1: v for k, v in enumerate(values)}


def sample_frame_indices(
    num_frames: int,
    *,
    max_frames: int = 16,
    min_frames: int = 2,
    fps: float = 10.0,
    sample_fps: float = 0.0,
) -> list[int]:
    """Indices of the frames shown to the model: uniform over the clip, first and last included.

    ``sample_fps > 0`` asks for about ``sample_fps`` frames per second of video (1 fps is what
    third-party RoboReward wrappers use); otherwise up to ``max_frames`` uniformly spaced frames.
    The count is clipped to ``[min_frames, max_frames]`` and to ``num_frames``; clips shorter than
    ``min_frames`` repeat their last frame (Qwen-VL video inputs need at least 2 frames).
    An empty clip gives ``[]``.
    """
    if num_frames <= 0:
        return []
    if max_frames < 1 or min_frames < 1 or min_frames > max_frames:
        raise ValueError(f"need 1 <= min_frames <= max_frames, got {min_frames}, {max_frames}")
    if sample_fps > 0:
        wanted = math.floor((num_frames - 1) / fps * sample_fps + 1e-9) + 1  # frames spanning first..last
    else:
        wanted = max_frames
    count = min(max(wanted, min_frames), max_frames, num_frames)
    indices = np.round(np.linspace(0, num_frames - 1, count)).astype(int).tolist()
    while len(indices) < min_frames:
        indices.append(num_frames - 1)
    return indices


def result_from_text(
    text: str,
    *,
    table: Mapping[int, float] = DEFAULT_SCORE_TO_PROGRESS,
    success_score: int = 5,
) -> tuple[int | None, float, bool]:
    """``(score, progress, success)`` from model output; ``(None, 0.0, False)`` if unparsable."""
    score = parse_answer(text)
    if score is None:
        return None, 0.0, False
    return score, score_to_progress(score, table), score >= success_score


def answer_success_prob(digit_logits: Sequence[float], score: int, success_score: int = 5) -> float:
    """P(score ≥ success_score) from the logits of the tokens "1".."5" at the step that wrote the
    answer digit, renormalized over those five tokens. Greedy decoding wrote ``score``, so the result
    agrees with the verdict up to the tie at 0.5 (a sanity check: the argmax must be ``score``)."""
    logits = np.asarray(digit_logits, dtype=np.float64)
    if logits.shape != (5,) or not np.all(np.isfinite(logits)):
        raise ValueError(f"need 5 finite digit logits, got {logits.tolist()}")
    p = np.exp(logits - logits.max())
    p /= p.sum()
    if int(np.argmax(p)) + 1 != score:
        raise ValueError(f"the answer {score} is not the most likely digit ({p.round(3).tolist()})")
    return float(p[success_score - 1 :].sum())


# ----------------------------------------------------------------------------- back-end
@dataclass(frozen=True)
class VLMRewardConfig:
    name: str = "vlm"
    model_path: str = ""  # local directory of a Qwen3-VL checkpoint (e.g. RoboReward-4B/8B)
    model_id: str = ""  # recorded with each result; defaults to the directory name
    model_revision: str = ""  # recorded with each result; defaults to a hash of config.json
    device: str = "auto"  # auto: cuda when available, else cpu
    dtype: str = "auto"  # auto: bfloat16 on GPU, float32 on CPU; or float32/bfloat16/float16
    max_frames: int = 16
    min_frames: int = 2
    sample_fps: float = 0.0  # > 0: about this many frames per second instead of max_frames
    max_new_tokens: int = 16
    timeout_s: float = 0.0  # > 0: generation stops after this long and the result is flagged
    success_score: int = 5
    progress: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # scores 1..5 -> progress
    prompt_template: str = ""  # empty: the built-in RoboReward rubric; must contain {task}
    batch_size: int = 4
    # in simulation (reward=vlm in robot-rl-train): score the rendered prefix every this many steps,
    # frames of this size; shaping adds gamma * progress' - progress (potential-based) to the reward
    score_every: int = 10
    image_size: int = 224
    shaping: bool = False
    shaping_gamma: float = 0.99
    # score each finished episode in the background (robot_rl/rewards/deferred.py); the learner
    # relabels the episode when the verdict arrives, so acting never waits for generation
    deferred: bool = False

    def __post_init__(self) -> None:
        check(
            self.score_every >= 1 and self.image_size >= 16, "score_every >= 1 and image_size >= 16 required"
        )
        check(self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        check(1 <= self.success_score <= 5, f"success_score must be in 1..5, got {self.success_score}")
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            f"device must be auto, cpu or cuda[:N], got {self.device!r}",
        )
        check(self.dtype in _DTYPES, f"dtype must be one of {', '.join(_DTYPES)}, got {self.dtype!r}")
        progress_table(self.progress)
        build_prompt("x", self.prompt_template or ROBOREWARD_PROMPT)
        sample_frame_indices(1, max_frames=self.max_frames, min_frames=self.min_frames)


_DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_device_dtype(device: str, dtype: str) -> tuple[str, str]:
    """``auto`` -> cuda + bfloat16 when a GPU is visible, else cpu + float32."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    return device, dtype


def load_qwen3_vl(path: str | Path, device: str = "auto", dtype: str = "auto") -> tuple[Any, Any]:
    """``(model, processor)`` from a local Qwen3-VL directory; never contacts a model hub."""
    path = Path(path).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no Qwen3-VL checkpoint at {path} (config.json missing)")
    transformers = require("transformers", "the vlm reward model")
    require("torchvision", "the vlm reward model's video processor")
    import torch

    device, dtype = resolve_device_dtype(device, dtype)
    processor = transformers.AutoProcessor.from_pretrained(path, local_files_only=True)
    processor.tokenizer.padding_side = "left"  # decoder-only batched generation
    model = transformers.AutoModelForImageTextToText.from_pretrained(
        path, local_files_only=True, dtype=getattr(torch, dtype)
    )
    model.to(device).eval()
    return model, processor


@REWARDS.register("vlm", VLMRewardConfig)
class VLMReward:
    """RoboReward prompt + parser around a local Qwen3-VL model (loaded on first use)."""

    source = "vlm"

    def __init__(self, cfg: VLMRewardConfig):
        check(bool(cfg.model_path), "reward.model_path is not set; point it at a local Qwen3-VL checkpoint")
        path = Path(cfg.model_path).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no Qwen3-VL checkpoint at {path} (config.json missing)")
        self.cfg = cfg
        self.path = path
        self.template = cfg.prompt_template or ROBOREWARD_PROMPT
        self.prompt_hash = prompt_hash(self.template)
        self.table = progress_table(cfg.progress)
        self.model_id = cfg.model_id or path.name
        self.model_revision = cfg.model_revision or _config_revision(path)
        self.model: Any = None
        self.processor: Any = None

    def wrap(self, env: Any) -> Any:
        """The VLM as the reward in simulation: rendered prefixes scored every ``score_every`` steps
        (synchronously: one generate call each; a GPU is advisable)."""
        from robot_rl.rewards.standin import VideoRewardWrapper

        c = self.cfg
        if c.deferred:
            from robot_rl.rewards.deferred import DeferredRewardWrapper, front_camera

            # (generation itself obeys timeout_s)
            return DeferredRewardWrapper(env, self, front_camera(env, c.image_size))
        return VideoRewardWrapper(env, self, c.score_every, c.image_size, c.shaping, c.shaping_gamma)

    def load(self) -> VLMReward:
        if self.model is None:
            self.model, self.processor = load_qwen3_vl(self.path, self.cfg.device, self.cfg.dtype)
        return self

    # -- scoring
    def score(self, req: RewardRequest) -> RewardResult:
        return self.score_batch([req])[0]

    def score_batch(self, reqs: Sequence[RewardRequest]) -> list[RewardResult]:
        self.load()
        results: list[RewardResult | None] = [None] * len(reqs)
        todo: list[tuple[int, list[int]]] = []
        for i, req in enumerate(reqs):
            idx = self._indices(req)
            if not idx:
                results[i] = self._failed(req, "empty", "no frames to score", [], time.perf_counter())
            else:
                todo.append((i, idx))
        for start in range(0, len(todo), self.cfg.batch_size):
            chunk = todo[start : start + self.cfg.batch_size]
            for i, res in zip([i for i, _ in chunk], self._generate([(reqs[i], idx) for i, idx in chunk])):
                results[i] = res
        return [r for r in results if r is not None]

    def _indices(self, req: RewardRequest) -> list[int]:
        return sample_frame_indices(
            len(req.frames),
            max_frames=self.cfg.max_frames,
            min_frames=self.cfg.min_frames,
            fps=req.fps,
            sample_fps=self.cfg.sample_fps,
        )

    def _failed(self, req, error, text, idx, started) -> RewardResult:
        return failed_result(
            req,
            error=error,
            raw_text=text,
            model_id=self.model_id,
            model_revision=self.model_revision,
            prompt_hash=self.prompt_hash,
            frames_used=idx,
            started=started,
        )

    def inputs(self, batch: Sequence[tuple[RewardRequest, list[int]]]) -> Any:
        """Processor outputs (token ids, pixel values, grids) for a batch of (request, frame indices)."""
        texts, videos, metadata = [], [], []
        for req, idx in batch:
            messages = [
                {
                    "role": "user",
                    "content": [
                        {"type": "video"},
                        {"type": "text", "text": build_prompt(req.task, self.template)},
                    ],
                }
            ]
            texts.append(
                self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            )
            videos.append(np.ascontiguousarray(req.frames[idx]))
            metadata.append(
                {"fps": float(req.fps), "frames_indices": list(idx), "total_num_frames": len(req.frames)}
            )
        return self.processor(
            text=texts,
            videos=videos,
            video_metadata=metadata,
            do_sample_frames=False,
            padding=True,
            return_tensors="pt",
        )

    def _generate(self, batch: Sequence[tuple[RewardRequest, list[int]]]) -> list[RewardResult]:
        import torch

        started = time.perf_counter()
        try:
            enc = self.inputs(batch).to(self.model.device)
            if "pixel_values_videos" in enc:
                enc["pixel_values_videos"] = enc["pixel_values_videos"].to(self.model.dtype)
            kwargs: dict[str, Any] = {
                "max_new_tokens": self.cfg.max_new_tokens,
                "do_sample": False,
                "output_scores": True,  # the answer digit's probabilities give success_prob
                "return_dict_in_generate": True,
            }
            if self.cfg.timeout_s > 0:
                kwargs["max_time"] = self.cfg.timeout_s
            with torch.inference_mode():
                out = self.model.generate(**enc, **kwargs)
            sequences = out if isinstance(out, torch.Tensor) else out.sequences
            step_scores = None if isinstance(out, torch.Tensor) else out.scores
            new_tokens = sequences[:, enc["input_ids"].shape[1] :]
            texts = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        except Exception as err:  # a model/processor failure is flagged, never raised into the loop
            msg = f"{type(err).__name__}: {err}".splitlines()[0]
            return [self._failed(req, "model", msg, idx, started) for req, idx in batch]
        elapsed = time.perf_counter() - started
        timed_out = self.cfg.timeout_s > 0 and elapsed >= self.cfg.timeout_s
        latency = elapsed * 1e3 / len(batch)
        results = []
        for row, ((req, idx), text) in enumerate(zip(batch, texts)):
            score, progress, success = result_from_text(
                text, table=self.table, success_score=self.cfg.success_score
            )
            if score is None:
                res = self._failed(req, "timeout" if timed_out else "parse", text, idx, None)
                results.append(_with_latency(res, latency))
                continue
            results.append(
                RewardResult(
                    score_raw=score,
                    progress=progress,
                    success=success,
                    success_prob=self._success_prob(new_tokens[row], step_scores, row, score, success),
                    parse_ok=True,
                    raw_text=text,
                    model_id=self.model_id,
                    model_revision=self.model_revision,
                    prompt_hash=self.prompt_hash,
                    frames_used=list(idx),
                    latency_ms=latency,
                    episode_id=req.episode_id,
                    mode=req.mode,
                )
            )
        return results

    def _success_prob(self, tokens: Any, step_scores: Any, row: int, score: int, success: bool) -> float:
        """The model's probability of success at the answer digit (:func:`answer_success_prob`).

        The answer digit is the last generated token that spells ``score`` (``"5"``, or ``"Ġ5"`` where
        the tokenizer merges the space); its rivals are the same token with the other digits. Falls
        back to 0/1 (the verdict) when generate returned no logits or a rival is not one token."""
        tokenizer = self.processor.tokenizer
        raw = tokenizer.convert_ids_to_tokens(tokens.tolist())
        positions = [j for j, t in enumerate(raw) if t is not None and t.lstrip("Ġ▁ ") == str(score)]
        if step_scores is None or not positions or positions[-1] >= len(step_scores):
            return float(success)
        answer = raw[positions[-1]]
        rivals = [answer[: -len(str(score))] + str(k) for k in range(1, 6)]
        ids = tokenizer.convert_tokens_to_ids(rivals)
        if any(i is None or i == tokenizer.unk_token_id for i in ids) or len(set(ids)) != 5:
            return float(success)
        logits = step_scores[positions[-1]][row, ids].float().cpu().numpy()
        try:
            return answer_success_prob(logits, score, self.cfg.success_score)
        except ValueError:  # a logits processor changed the choice: keep the verdict
            return float(success)


def _with_latency(res: RewardResult, latency_ms: float) -> RewardResult:
    return replace(res, latency_ms=latency_ms)


def _config_revision(path: Path) -> str:
    """``config:<hash>`` of the checkpoint's config.json (a stand-in when no revision is given)."""
    try:
        data = json.loads((path / "config.json").read_text())
        commit = data.get("_commit_hash")
        if commit:
            return str(commit)
        return "config:" + hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
    except (OSError, ValueError):
        return "unknown"
