"""``standin``: a small trained video + text reward model with RoboReward's interface (ALGORITHMS §8(g)).

It stands in for the 4B/8B RoboReward VLM where none can run: frames of an episode (or its prefix) and
the instruction in, a 1–5 rubric score out, written as ``"ANSWER: k"`` and read by the same parser as
the ``vlm`` back-end, so swapping in the real model changes nothing upstream.

Data (:func:`collect_rollouts`, :func:`make_clips`): Lift rollouts of the scripted expert with action
noise drawn per episode (about half succeed), the front camera's workspace crop at 64×64, and the
privileged rubric of every step (``LiftEnv.rubric_score``: 5 lifted, 4 grasped and half-way up,
3 grasped, 2 within 5 cm, 1 otherwise); a successful rollout goes on ``HOLD_STEPS`` after its
first success. Each rollout gives clips labelled like RoboReward's training data:
- the whole episode, labelled by its final step;
- temporal clipping: prefixes ending at u·T, u ~ U(0.2, 0.9), labelled by their last step;
- counterfactual instructions: the same clip with the object's colour swapped in the instruction
  (that object is not in the scene: nothing was achieved), label 1.

Model (:class:`StandInRewardNet`): K = 8 frames sampled uniformly with the last one always included; a
3-layer CNN (32 channels, full resolution in the first layer) per frame read out by a spatial softmax
(keypoints) and a global max; the instruction as a hashed bag of words (512 buckets) that marks the
pixels of its colour (three match maps of increasing sharpness as extra input channels) and scales
the first layer (FiLM); the last frame's features, last − first, the mean over frames and the named
colour's presence (each map's maximum) in the last and in any frame; an MLP to the score's 5 logits.
A gate on the same clip features, the named colour's share of the pixels and the text says "the
named object is in view". The answer is the mixture p = g·q + (1 − g)·[score 1]
(:func:`gated_log_probs`): an instruction naming an absent object scores 1 whatever happened in the
video. Loss: cross-entropy of the mixture plus a binary cross-entropy on the gate, whose target
(right vs wrong instruction) comes free with every counterfactual twin, including the twins of failed
clips whose score is 1 either way; random-shift augmentation, bfloat16 autocast.
``robot-rl-bench rewards`` trains and measures it.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from robot_rl.core.errors import ConfigError
from robot_rl.core.serialization import load_model_dir, save_model_dir
from robot_rl.rewards import REWARDS
from robot_rl.rewards.interface import RewardRequest, RewardResult, failed_result
from robot_rl.rewards.vlm import progress_table, result_from_text, sample_frame_indices

META_FILE = "standin.json"
# 4: the score gated by "the named object is in view"; 3: three colour-match maps and their presence;
# 2: one match map; 1: pooled CNN, 64 text buckets
ARCH_VERSION = 4
MATCH_LOG_SHARPNESS = (2.0, 3.5, 5.0)  # initial log s of the colour-match maps exp(-s |rgb - c|^2)
NUM_FRAMES = 8
TEXT_BUCKETS = 512  # 64 buckets made 'orange' share one with 'cube' and 'purple' with 'the'
HOLD_STEPS = 10  # steps recorded after the first success, the expert holding it without noise
# a colour-name lexicon (everyday RGB of each word, not the simulator's materials): the text -> colour
# layers start from it, so the match maps mark the named object from the first step
COLOUR_LEXICON = {
    "red": (0.9, 0.1, 0.1),
    "green": (0.1, 0.6, 0.1),
    "blue": (0.1, 0.2, 0.9),
    "yellow": (0.95, 0.9, 0.1),
    "purple": (0.5, 0.1, 0.6),
    "orange": (1.0, 0.55, 0.0),
}
LEXICON_STEPS = 300  # Adam steps of the lexicon fit (a few ms each)
COLOURS = tuple(COLOUR_LEXICON)  # the words robot_rl.sim.base.COLOURS names, in its order


# ----------------------------------------------------------------------------- data
@dataclass
class Rollout:
    frames: np.ndarray  # uint8 [T+1, H, W, 3]: the reset observation, then one per step
    rubric: np.ndarray  # int [T+1]: the privileged 1-5 score of each of those states
    task: str
    success: bool  # a success video: its last state is a success (rubric 5)


@dataclass
class Clip:
    rollout: int  # index into the rollouts
    t_end: int  # last frame of the clip (inclusive)
    task: str
    label: int  # 1..5
    kind: str  # "full" | "prefix" | "counterfactual"


# The front camera sees the whole scene; the workspace (and the 8 cm lift) covers a small part of it.
# Frames are rendered at RENDER px and cropped to the workspace rows/columns below (HIL-SERL crops a
# region of interest the same way), then resized to IMAGE px: the cube grows from ~3 to ~6 px.
RENDER, IMAGE = 128, 64
CROP = (24, 104, 16, 112)  # rows, columns of the RENDER-px front image


def preprocess_frame(frame: np.ndarray) -> np.ndarray:
    """A RENDER-px front-camera frame -> the IMAGE-px workspace crop the model sees (uint8)."""
    from PIL import Image

    r0, r1, c0, c1 = CROP
    crop = Image.fromarray(np.ascontiguousarray(frame[r0:r1, c0:c1]))
    return np.asarray(crop.resize((IMAGE, IMAGE), Image.BILINEAR), dtype=np.uint8)


def render_frame(task_env: Any) -> np.ndarray:
    return preprocess_frame(task_env.render_camera("front", RENDER, RENDER))


def collect_rollouts(
    n_episodes: int, seed: int = 0, max_noise: float = 1.2, hold_steps: int = HOLD_STEPS
) -> list[Rollout]:
    """Scripted-expert Lift rollouts with per-episode noise ~ U(0, max_noise), workspace frames.

    A successful rollout goes on for ``hold_steps`` after its first success (or to the time limit),
    the expert holding the cube up without action noise: the lifted state is then seen in more than
    one frame, as in a recorded demonstration that ends shortly after its goal. (With the noise kept
    on, 8 of 46 held-out successes dropped the cube again while held: "success videos" whose last
    frame is a failure.)"""
    import robot_rl  # noqa: F401  (registers the ids)

    env = gym.make("robot_rl/Lift-v0", terminate_on_success=False)
    rng = np.random.default_rng(seed)
    out = []
    try:
        for i in range(n_episodes):
            noise = float(rng.uniform(0.0, max_noise))
            _, info = env.reset(seed=seed * 100_003 + i)
            task_env = env.unwrapped
            frames, rubric = [render_frame(task_env)], [task_env.rubric_score()]
            done, succeeded_at = False, None
            while not done:
                hold = succeeded_at is not None
                action = task_env.expert_action(noise=0.0 if hold else noise)
                _, _, terminated, truncated, info = env.step(action)
                frames.append(render_frame(task_env))
                rubric.append(task_env.rubric_score())
                if succeeded_at is None and info["is_success"]:
                    succeeded_at = len(rubric) - 1
                held = succeeded_at is not None and len(rubric) - 1 - succeeded_at >= hold_steps
                done = terminated or truncated or held
            out.append(Rollout(np.stack(frames), np.asarray(rubric), str(info["task"]), rubric[-1] == 5))
    finally:
        env.close()
    return out


def counterfactual_task(task: str, rng: np.random.Generator) -> str | None:
    """The instruction with its colour word swapped for another colour (None if it names none)."""
    words = task.split()
    for i, w in enumerate(words):
        if w in COLOURS:
            words[i] = str(rng.choice([c for c in COLOURS if c != w]))
            return " ".join(words)
    return None


def check_counterfactuals(counterfactuals: int) -> None:
    """Wrong-instruction twins per clip: each names a different colour other than the right one."""
    if not 0 <= counterfactuals < len(COLOURS):
        raise ConfigError(f"counterfactuals must be in [0, {len(COLOURS) - 1}], got {counterfactuals}")


def make_clips(
    rollouts: Sequence[Rollout],
    seed: int = 0,
    prefixes: int = 2,
    counterfactual_prefixes: bool = False,
    counterfactuals: int = 1,
) -> list[Clip]:
    """Per rollout: the whole clip, ``prefixes`` temporal clips, and the whole clip with
    ``counterfactuals`` distinct wrong instructions (also each prefix, for training:
    ``counterfactual_prefixes``)."""
    check_counterfactuals(counterfactuals)
    rng = np.random.default_rng(seed)
    clips = []
    for r, ro in enumerate(rollouts):
        last = len(ro.frames) - 1
        ends = [last] + [max(int(rng.uniform(0.2, 0.9) * last), 1) for _ in range(prefixes)]
        for i, t in enumerate(ends):
            clips.append(Clip(r, t, ro.task, int(ro.rubric[t]), "full" if i == 0 else "prefix"))
        for t in ends if counterfactual_prefixes else ends[:1]:
            wrong: list[str] = []
            while len(wrong) < counterfactuals:
                task = counterfactual_task(ro.task, rng)
                if task is None:
                    break
                if task not in wrong:
                    wrong.append(task)
            clips += [Clip(r, t, task, 1, "counterfactual") for task in wrong]
    return clips


def text_features(task: str) -> np.ndarray:
    """Hashed bag of words: ``TEXT_BUCKETS`` counts (crc32 of each lower-cased word)."""
    v = np.zeros(TEXT_BUCKETS, np.float32)
    for w in task.lower().split():
        v[zlib.crc32(w.encode()) % TEXT_BUCKETS] += 1.0
    return v


def clip_frames(frames: np.ndarray, t_end: int) -> np.ndarray:
    """The K frames the model sees of ``frames[: t_end + 1]``: uniform, first and last included."""
    idx = sample_frame_indices(t_end + 1, max_frames=NUM_FRAMES, min_frames=NUM_FRAMES)
    return frames[idx]


# ----------------------------------------------------------------------------- model
@dataclass(frozen=True)
class StandInTrainConfig:
    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    channels: int = 32
    hidden: int = 128
    shift: int = 4  # random-shift augmentation, pixels
    seed: int = 0
    gate_weight: float = 1.0  # weight of the gate's binary cross-entropy (right vs wrong instruction)
    bf16: bool = True  # bfloat16 autocast in training: the convolutions ~2x faster on CPUs with AMX


class SpatialSoftmax(nn.Module):
    """[N, C, H, W] feature maps -> [N, 2C] expected (x, y) of each channel's softmax, in [-1, 1]
    (Levine et al. 2016): where a small object is, at sub-pixel precision."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p = torch.softmax(x.reshape(n, c, h * w), -1).reshape(n, c, h, w)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device)
        ys = torch.linspace(-1.0, 1.0, h, device=x.device)
        return torch.cat([(p.sum(2) * xs).sum(-1), (p.sum(3) * ys).sum(-1)], dim=1)


def gated_log_probs(score_logits: torch.Tensor, in_view_logit: torch.Tensor) -> torch.Tensor:
    """log of p(k) = g·q(k) + (1 − g)·[k = 1], with q = softmax(score_logits) [B, 5] and g =
    sigmoid(in_view_logit) [B]: the score given the named object is in view, or 1 when it is not."""
    log_q = torch.log_softmax(score_logits, -1)
    log_g = nn.functional.logsigmoid(in_view_logit)[:, None]
    log_not_g = nn.functional.logsigmoid(-in_view_logit)
    first = torch.logaddexp(log_g[:, 0] + log_q[:, 0], log_not_g)
    return torch.cat([first[:, None], log_g + log_q[:, 1:]], dim=1)


class StandInRewardNet(nn.Module):
    """(frames uint8 [B, K, H, W, 3], text [B, TEXT_BUCKETS]) -> log-probabilities of the scores 1..5
    (softmax of them gives the probabilities back).

    The cube is a few pixels wide and an 8 cm lift moves it by a few pixels, so the CNN keeps full
    resolution in its first layer and reads positions with a spatial softmax (keypoints) next to a
    global max (what is present). The instruction enters the image path twice: a colour predicted
    from the text marks matching pixels as extra input channels, ``exp(-s |rgb - c|^2)`` at the
    sharpnesses of ``MATCH_LOG_SHARPNESS``, and FiLM scales the first layer's channels, so "is the
    named object the one that moved" is decided where the pixels are. Per frame: keypoints + max; the
    clip: last frame, last − first, mean over frames, and each match map's maximum (the named colour
    in view) in the last frame and in any frame. The in-view gate sees the same clip features, each
    match map's mean (the share of the named colour, last frame and over frames) and the text."""

    def __init__(self, channels: int = 32, hidden: int = 128):
        super().__init__()
        c = channels
        self.text = nn.Sequential(nn.Linear(TEXT_BUCKETS, 64), nn.ReLU())
        self.colour = nn.Linear(64, 3)  # the named colour, RGB in [0, 1] after a sigmoid
        # log s of the match maps, from loose to sharp: rendered orange and yellow are only ~0.3 apart
        # in RGB, so a loose match fires on both; a sharp one separates them but misses shaded faces
        self.colour_sharpness = nn.Parameter(torch.tensor(MATCH_LOG_SHARPNESS))
        m = len(MATCH_LOG_SHARPNESS)
        self.film = nn.Linear(64, 2 * c)
        nn.init.zeros_(self.film.weight)  # FiLM starts as the identity
        nn.init.zeros_(self.film.bias)
        self.conv1 = nn.Conv2d(3 + m, c, 5, stride=1, padding=2)
        self.convs = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c, c, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, stride=1, padding=1),
        )
        self.keypoints = SpatialSoftmax()
        f = 3 * c  # 2c keypoint coordinates + c maxima per frame
        # + the named colour's presence (max of each match map) in the last frame and in any frame
        self.head = nn.Sequential(nn.Linear(3 * f + 2 * m + 64, hidden), nn.ReLU(), nn.Linear(hidden, 5))
        self.in_view = nn.Sequential(nn.Linear(3 * f + 4 * m + 64, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, frames: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return gated_log_probs(*self.parts(frames, text))

    def parts(self, frames: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(score logits [B, 5] given the named object is in view, in-view logit [B])."""
        b, k = frames.shape[:2]
        rgb = frames.reshape(b * k, *frames.shape[2:]).permute(0, 3, 1, 2).float() / 255.0
        t = self.text(text)
        named = torch.sigmoid(self.colour(t)).repeat_interleave(k, 0)[:, :, None, None]
        distance = (rgb - named).square().sum(1, keepdim=True)  # [BK, 1, H, W]
        match = torch.exp(-self.colour_sharpness.exp()[None, :, None, None] * distance)  # [BK, M, H, W]
        presence = match.amax((2, 3)).reshape(b, k, -1)
        coverage = match.mean((2, 3)).reshape(b, k, -1)  # the share of pixels of the named colour
        gain, bias = self.film(t).repeat_interleave(k, 0)[:, :, None, None].chunk(2, dim=1)
        h = self.convs(self.conv1(torch.cat([rgb - 0.5, match], 1)) * (1.0 + gain) + bias)
        feat = torch.cat([self.keypoints(h), h.amax((2, 3))], dim=1).reshape(b, k, -1)
        clip = torch.cat(
            [feat[:, -1], feat[:, -1] - feat[:, 0], feat.mean(1), presence[:, -1], presence.amax(1)], dim=1
        )
        in_view = torch.cat([clip, coverage[:, -1], coverage.mean(1), t], dim=1)
        return self.head(torch.cat([clip, t], dim=1)), self.in_view(in_view)[:, 0]


def _batch(rollouts: Sequence[Rollout], clips: Sequence[Clip]) -> tuple[torch.Tensor, torch.Tensor]:
    frames = np.stack([clip_frames(rollouts[c.rollout].frames, c.t_end) for c in clips])
    text = np.stack([text_features(c.task) for c in clips])
    return torch.from_numpy(frames), torch.from_numpy(text)


def _shift(frames: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels (edge padding), one offset per clip."""
    if pad == 0:
        return frames
    b, k, h, w, ch = frames.shape
    padded = torch.nn.functional.pad(
        frames.permute(0, 1, 4, 2, 3).reshape(b, k * ch, h, w).float(), (pad,) * 4, mode="replicate"
    )
    out = torch.empty_like(frames)
    offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=gen)
    for i in range(b):
        dy, dx = int(offsets[i, 0]), int(offsets[i, 1])
        out[i] = (
            padded[i, :, dy : dy + h, dx : dx + w].reshape(k, ch, h, w).permute(0, 2, 3, 1).to(frames.dtype)
        )
    return out


def init_colour_from_lexicon(
    model: StandInRewardNet, tasks: Sequence[str], steps: int = LEXICON_STEPS
) -> float:
    """Fit the text -> named-colour layers to :data:`COLOUR_LEXICON` on the instructions that name a
    colour (text only, no images: what a language model knows of colour words); returns the final
    mean squared error. Training goes on from there and may move the colours to the rendered ones."""
    named = [
        (t, COLOUR_LEXICON[w]) for t in sorted(set(tasks)) for w in t.lower().split() if w in COLOUR_LEXICON
    ]
    if not named:
        return float("nan")
    text = torch.from_numpy(np.stack([text_features(t) for t, _ in named]))
    target = torch.tensor([rgb for _, rgb in named])
    opt = torch.optim.Adam([*model.text.parameters(), *model.colour.parameters()], lr=1e-2)
    for _ in range(steps):
        loss = (torch.sigmoid(model.colour(model.text(text))) - target).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return float(loss.detach())


def train_standin(
    rollouts: Sequence[Rollout], clips: Sequence[Clip], cfg: StandInTrainConfig = StandInTrainConfig()
) -> tuple[StandInRewardNet, dict[str, Any]]:
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = StandInRewardNet(cfg.channels, cfg.hidden)
    lexicon_mse = init_colour_from_lexicon(model, [c.task for c in clips])
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    frames, text = _batch(rollouts, clips)
    labels = torch.tensor([c.label - 1 for c in clips])
    named_in_view = torch.tensor([float(c.kind != "counterfactual") for c in clips])
    n = len(clips)
    # cross-entropy weighted by 1/sqrt(class frequency): 1s dominate (failures, counterfactuals) and
    # 4s are rare, but the wrong-instruction 1s must still count
    counts = torch.bincount(labels, minlength=5).float()
    weights = torch.where(counts > 0, (n / (5 * counts.clamp(min=1))).sqrt(), torch.zeros(5))
    t0 = time.perf_counter()
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                score_logits, in_view_logit = model.parts(_shift(frames[idx], cfg.shift, gen), text[idx])
            log_probs = gated_log_probs(score_logits.float(), in_view_logit.float())
            loss = nn.functional.nll_loss(log_probs, labels[idx], weight=weights)
            loss = loss + cfg.gate_weight * nn.functional.binary_cross_entropy_with_logits(
                in_view_logit.float(), named_in_view[idx]
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    return model, {
        "clips": n,
        "epochs": cfg.epochs,
        "train_s": time.perf_counter() - t0,
        "final_loss": float(loss.detach()),
        "lexicon_mse": lexicon_mse,
    }


@torch.no_grad()
def predict_probs(
    model: StandInRewardNet, rollouts: Sequence[Rollout], clips: Sequence[Clip], batch: int = 128
) -> np.ndarray:
    """[N, 5] probabilities of the scores 1..5 for each clip."""
    out = [np.zeros((0, 5), np.float32)]
    for start in range(0, len(clips), batch):
        frames, text = _batch(rollouts, clips[start : start + batch])
        out.append(torch.softmax(model(frames, text), -1).numpy())
    return np.concatenate(out)


def predict_scores(
    model: StandInRewardNet, rollouts: Sequence[Rollout], clips: Sequence[Clip], batch: int = 128
) -> np.ndarray:
    """Argmax 1-5 score of each clip (what the model answers)."""
    return predict_probs(model, rollouts, clips, batch).argmax(1) + 1


def save_standin(path: str | Path, model: StandInRewardNet, meta: dict[str, Any]) -> Path:
    """Write the model directory atomically (``model.safetensors`` + ``standin.json``); never pickle."""
    return save_model_dir(path, model, META_FILE, {**meta, "arch_version": ARCH_VERSION})


def load_standin(path: str | Path) -> tuple[StandInRewardNet, dict[str, Any]]:
    state, meta = load_model_dir(path, META_FILE, "a stand-in reward model")
    version = meta.get("arch_version", 1)
    if version != ARCH_VERSION:
        raise ConfigError(
            f"{path} holds a version-{version} stand-in reward model; this code reads version "
            f"{ARCH_VERSION}: retrain it (robot-rl-bench rewards --save DIR)"
        )
    model = StandInRewardNet(int(meta["channels"]), int(meta["hidden"]))
    model.load_state_dict(state)
    return model.eval(), meta


# ----------------------------------------------------------------------------- back-end
@dataclass(frozen=True)
class StandInRewardConfig:
    name: str = "standin"
    path: str = ""  # a directory written by save_standin (robot-rl-bench rewards --save)
    progress: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    success_score: int = 5
    score_every: int = 5  # env wrapper: score the prefix every this many steps
    shaping: bool = False  # add potential-based shaping gamma * progress' - progress to the reward
    shaping_gamma: float = 0.99
    # score each finished episode in the background and relabel its transitions when the verdict
    # arrives (robot_rl/rewards/deferred.py) instead of scoring prefixes inside env.step
    deferred: bool = False


@REWARDS.register("standin", StandInRewardConfig)
class StandInReward:
    """The stand-in behind the RewardModel interface (``score`` / ``score_batch``) and as an env reward."""

    source = "standin"

    def __init__(self, cfg: StandInRewardConfig, model: StandInRewardNet | None = None):
        self.cfg = cfg
        if model is None:
            if not cfg.path:
                raise ConfigError("reward.path is not set; point it at a trained stand-in reward model")
            model, _ = load_standin(cfg.path)
        self.model = model
        self.table = progress_table(cfg.progress)
        self.model_id = "robot_rl-standin"
        self.model_revision = Path(cfg.path).name if cfg.path else "in-memory"
        self.prompt_hash = "hashed-bag-of-words"

    def score(self, req: RewardRequest) -> RewardResult:
        return self.score_batch([req])[0]

    @torch.no_grad()
    def score_batch(self, reqs: Sequence[RewardRequest]) -> list[RewardResult]:
        started = time.perf_counter()
        results = []
        for req in reqs:
            if len(req.frames) == 0:
                results.append(
                    failed_result(
                        req,
                        error="empty",
                        raw_text="no frames to score",
                        model_id=self.model_id,
                        model_revision=self.model_revision,
                        prompt_hash=self.prompt_hash,
                        started=started,
                    )
                )
                continue
            idx = sample_frame_indices(len(req.frames), max_frames=NUM_FRAMES, min_frames=NUM_FRAMES)
            frames = torch.from_numpy(np.ascontiguousarray(req.frames[idx]))[None]
            probs = torch.softmax(self.model(frames, torch.from_numpy(text_features(req.task))[None]), -1)[0]
            text = f"ANSWER: {int(probs.argmax()) + 1}"  # the RoboReward output format, parsed as the VLM's
            score, progress, success = result_from_text(
                text, table=self.table, success_score=self.cfg.success_score
            )
            results.append(
                RewardResult(
                    score_raw=score,
                    progress=progress,
                    success=success,
                    success_prob=float(probs[self.cfg.success_score - 1 :].sum()),
                    parse_ok=score is not None,
                    raw_text=text,
                    model_id=self.model_id,
                    model_revision=self.model_revision,
                    prompt_hash=self.prompt_hash,
                    frames_used=list(idx),
                    latency_ms=1e3 * (time.perf_counter() - started),
                    episode_id=req.episode_id,
                    mode=req.mode,
                )
            )
        return results

    def wrap(self, env: gym.Env) -> gym.Env:
        c = self.cfg
        if c.deferred:
            from robot_rl.rewards.deferred import DeferredRewardWrapper, front_camera

            front_camera(env, RENDER)  # (a ConfigError when the task cannot render)
            return DeferredRewardWrapper(env, self, render_frame)  # the workspace crop it was trained on
        return VideoRewardWrapper(
            env, self, c.score_every, IMAGE, c.shaping, c.shaping_gamma, workspace_crop=True
        )


class VideoRewardWrapper(gym.Wrapper):
    """A frames-based reward model as the reward in simulation (RoboReward-style, sparse).

    Renders the front camera every step (``image_size`` px, or the stand-in's workspace crop); every
    ``score_every`` steps and at the episode's end it scores the prefix (``mode="prefix"``); a success
    verdict gives reward 1 and, when the task terminates on success, ends the episode; otherwise the
    reward is 0. A parse failure
    is never a reward (counted in ``info["reward_parse_failures"]``). ``info["is_success"]`` stays the
    simulator's truth, ``info["reward_score"]`` carries the last 1-5 score.

    ``shaping``: potential-based shaping with Φ = the progress of the latest scored prefix (0 at the
    start, held between scores): ``r += γ Φ_{t+1} − Φ_t`` (Ng et al. 1999: the optimal policy is
    unchanged); a denser signal from prefix scores (RoboReward's rubric judges final states, so this
    use is off-label; ALGORITHMS §8(f)).
    """

    def __init__(
        self,
        env: gym.Env,
        model: Any,
        score_every: int = 5,
        image_size: int = 64,
        shaping: bool = False,
        shaping_gamma: float = 0.99,
        workspace_crop: bool = False,
    ):
        super().__init__(env)
        self.model, self.every, self.size = model, int(score_every), int(image_size)
        self.workspace_crop = bool(workspace_crop)
        self.shaping, self.gamma = bool(shaping), float(shaping_gamma)
        base = env.unwrapped
        if not hasattr(base, "render_camera"):
            raise ConfigError(f"{type(base).__name__} cannot render frames for a video reward model")
        self.terminate_on_success = bool(getattr(base, "terminate_on_success", False))
        base.terminate_on_success = False  # success (and termination) come from the reward model

    def _frame(self) -> np.ndarray:
        if self.workspace_crop:  # the stand-in's own view: the workspace crop it was trained on
            return render_frame(self.env.unwrapped)
        return self.env.unwrapped.render_camera("front", self.size, self.size)

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self.frames, self.t, self.parse_failures, self.score = [self._frame()], 0, 0, None
        self.potential = 0.0
        self.task = str(info.get("task", ""))
        return obs, info

    def step(self, action: Any):
        obs, _, terminated, truncated, info = self.env.step(action)
        self.t += 1
        self.frames.append(self._frame())
        reward, judged_success, potential = 0.0, False, self.potential
        if self.t % self.every == 0 or terminated or truncated:
            res = self.model.score(RewardRequest(np.stack(self.frames), self.task, mode="prefix"))
            if res.usable:
                self.score, judged_success, potential = res.score_raw, res.success, res.progress
            else:
                self.parse_failures += 1
        if judged_success:
            reward = 1.0
            terminated = terminated or self.terminate_on_success
        if self.shaping:
            reward += self.gamma * potential - self.potential
        self.potential = potential
        info = {**info, "reward_score": self.score, "reward_parse_failures": self.parse_failures}
        return obs, reward, terminated, truncated, info
