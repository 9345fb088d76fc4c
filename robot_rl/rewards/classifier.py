"""``classifier``: a learned binary success classifier as the reward (HIL-SERL's recipe, on states or
on one camera's images; ALGORITHMS.md §9).

Training data are recorded episodes with their per-step sparse reward (1 while the task is solved):
the label of step ``t`` is ``r_t > 0`` and the input is the observation *after* the action: the state
``s_{t+1}``, or with ``camera`` set that camera's image of it (record the episodes with
``task.obs_mode=state+pixels``).
Record them with the expert holding the solved state (``task.terminate_on_success=false``) and keep
the failures, so both classes are well represented::

    robot-rl-collect task=lift n_episodes=200 expert_noise=0.8 keep_failures=true \\
        task.terminate_on_success=false out=data/lift_reward
    robot-rl-reward-train --store data/lift_reward --out models/lift_success
    robot-rl-train reward=classifier reward.path=models/lift_success

Model: state normalizer → MLP → one logit, with Gaussian state noise as augmentation; or for images
the policies' small CNN with a spatial softmax (``robot_rl.policies.encoders.ImageEncoder``) → MLP →
one logit (DrQ random shifts as augmentation are available, off by default: see
``ClassifierTrainConfig.random_shift_pad``). Both are trained with class-balanced binary
cross-entropy. Calibration: the episodes are split (not the steps), the
threshold is the one with the best F1 on the held-out episodes, cut halfway between neighbouring
scores, and precision/recall there are saved with the model (``classifier.json`` +
``model.safetensors``; never pickle).

In the environment (:meth:`ClassifierReward.wrap`) the classifier replaces the task's reward and
success-termination: ``r = 1[p(success | s') ≥ τ]`` and, when the task terminates on success, the
episode ends on the classifier's verdict; ``info["is_success"]`` stays the simulator's truth (so
evaluations report real success) and ``info["reward_success_prob"]`` carries ``p``. An image
classifier reads ``pixels/<camera>`` from the observation, or renders the camera itself at its
training size when the task's observation does not carry it.

An image classifier is also a frames-based :class:`~robot_rl.rewards.interface.RewardModel`
(``score`` / ``score_batch``, so the ROS ``reward`` node can run it): it judges the request's last
frame (resized to its training size when the camera's differs): ``success = p ≥ τ``, ``progress = p``,
``score_raw`` 1 for a success and 0 otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from robot_rl.core.errors import ConfigError, DataError
from robot_rl.core.networks import StateNormalizer, mlp
from robot_rl.core.serialization import load_model_dir, save_model_dir
from robot_rl.core.types import STATE_KEY
from robot_rl.policies.encoders import ImageEncoder
from robot_rl.rewards import REWARDS
from robot_rl.rewards.calibration import best_f1_threshold
from robot_rl.rewards.interface import RewardRequest, RewardResult, failed_result

META_FILE = "classifier.json"
# robot-rl-reward-train's defaults for images: a CNN step on 64 images of 64 px takes ~0.1 s on one
# CPU core, so 2000 steps of 64 (~4 min) instead of the state model's 3000 of 256
IMAGE_STEPS, IMAGE_BATCH_SIZE = 2000, 64


@dataclass(frozen=True)
class ClassifierRewardConfig:
    name: str = "classifier"
    path: str = ""  # a directory written by robot-rl-reward-train
    threshold: float = 0.0  # > 0 overrides the calibrated threshold


@dataclass(frozen=True)
class ClassifierTrainConfig:
    hidden_dims: list[int] = field(default_factory=lambda: [256, 256])
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    state_noise: float = 0.01  # σ of the Gaussian noise added to normalized states (augmentation)
    val_fraction: float = 0.25  # share of the episodes held out for the threshold calibration
    seed: int = 0
    # "" = classify states; a camera name (e.g. "front") = classify that camera's images
    camera: str = ""
    cnn_channels: list[int] = field(default_factory=lambda: [32, 32, 32])
    image_feature_dim: int = 64
    # DrQ random shifts, in pixels. Off: on Lift's 64 px front camera "lifted" is a 2-3 px change of
    # the cube's height, and shifts of ±1 or ±4 px lowered the held-out F1 from 0.91 to 0.80 / 0.75
    # (docs/benchmarks.md); a camera whose cue is coarser can turn them on
    random_shift_pad: int = 0


class SuccessClassifier(nn.Module):
    """Success logits ``[B]`` of states ``[B, Ds]`` or, with ``camera`` set, of that camera's uint8
    images ``[B, H, W, 3]`` (``image_size`` square)."""

    def __init__(
        self,
        state_dim: int,
        hidden_dims: list[int],
        camera: str = "",
        image_size: int = 0,
        cnn_channels: list[int] | None = None,
        image_feature_dim: int = 64,
        random_shift_pad: int = 0,
    ):
        super().__init__()
        self.state_dim, self.hidden_dims = state_dim, list(hidden_dims)
        self.camera, self.image_size = camera, int(image_size)
        self.cnn_channels, self.image_feature_dim = list(cnn_channels or [32, 32, 32]), image_feature_dim
        if camera:
            self.encoder = ImageEncoder(self.cnn_channels, image_feature_dim, random_shift_pad)
            in_dim = image_feature_dim
        else:
            self.normalizer = StateNormalizer(state_dim)
            in_dim = state_dim
        self.net = mlp(in_dim, hidden_dims, 1, layer_norm=True)

    def forward(self, inputs: torch.Tensor, noise_std: float = 0.0) -> torch.Tensor:
        if self.camera:  # random shifts while training (ImageEncoder), no state noise
            return self.net(self.encoder(inputs)).squeeze(-1)
        x = self.normalizer(inputs)
        if noise_std > 0:
            x = x + noise_std * torch.randn_like(x)
        return self.net(x).squeeze(-1)

    @torch.no_grad()
    def prob(self, inputs: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """``p(success)`` of states (float) or images (uint8), in chunks of ``chunk`` rows."""
        dtype = torch.uint8 if self.camera else torch.float32
        parts = [
            torch.sigmoid(self(torch.as_tensor(inputs[i : i + chunk], dtype=dtype))).numpy()
            for i in range(0, len(inputs), chunk)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def labelled_steps(episodes: list[Any], camera: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(inputs [N, ...], labels [N] in {0, 1}, episode index [N])`` from episodes with per-step
    sparse ``rewards``: the inputs are the next states ``[N, Ds]`` (``states`` then ``final_state``)
    or, with ``camera``, that camera's next images uint8 ``[N, H, W, 3]`` (``pixels`` then
    ``final_pixels``)."""
    xs, ys, ids = [], [], []
    for i, ep in enumerate(episodes):
        if camera:
            if camera not in ep.pixels or camera not in ep.final_pixels:
                raise DataError(
                    f"episode {i} has no {camera!r} images; record with task.obs_mode=state+pixels"
                )
            xs.append(np.concatenate([ep.pixels[camera][1:], ep.final_pixels[camera][None]]))
        else:
            if ep.final_state is None:
                raise DataError(f"episode {i} has no final observation; cannot label its last step")
            xs.append(np.concatenate([ep.states[1:], ep.final_state[None]]).astype(np.float32))
        ys.append((np.asarray(ep.rewards) > 0).astype(np.float32))
        ids.append(np.full(len(ep.rewards), i))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ids)


def train_classifier(
    episodes: list[Any], cfg: ClassifierTrainConfig | None = None
) -> tuple[SuccessClassifier, dict[str, Any]]:
    """Train and calibrate a success classifier on ``episodes`` (see the module docstring).

    Returns the model and its report: the held-out threshold, precision, recall and F1, and the
    class counts of both splits.
    """
    cfg = cfg or ClassifierTrainConfig()
    x, y, ep = labelled_steps(episodes, cfg.camera)
    if y.sum() == 0 or y.sum() == len(y):
        raise DataError(
            f"need both success and failure steps to train a classifier, got {int(y.sum())}/{len(y)}"
        )
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(episodes))
    n_val = max(1, round(cfg.val_fraction * len(episodes)))
    val = np.isin(ep, order[:n_val])
    if y[~val].sum() == 0 or y[val].sum() == 0:
        raise DataError(
            "both the training and the held-out episodes need success steps; record more episodes"
        )
    torch.manual_seed(cfg.seed)
    if cfg.camera:
        if x.shape[1] != x.shape[2]:
            raise DataError(f"camera {cfg.camera!r} images must be square, got {x.shape[1]}x{x.shape[2]}")
        model = SuccessClassifier(
            0,
            cfg.hidden_dims,
            cfg.camera,
            x.shape[1],
            cfg.cnn_channels,
            cfg.image_feature_dim,
            cfg.random_shift_pad,
        )
    else:
        model = SuccessClassifier(x.shape[1], cfg.hidden_dims)
        model.normalizer.fit(torch.as_tensor(x[~val]))
    xt, yt = torch.as_tensor(x[~val]), torch.as_tensor(y[~val])
    pos_weight = ((len(yt) - yt.sum()) / yt.sum()).detach()  # balance the classes
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.steps):
        idx = torch.randint(0, len(xt), (cfg.batch_size,), generator=gen)
        loss = nn.functional.binary_cross_entropy_with_logits(
            model(xt[idx], cfg.state_noise), yt[idx], pos_weight=pos_weight
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    calib = best_f1_threshold(model.prob(x[val]), y[val])
    report = {
        **calib,
        "train_steps": {"positive": int(y[~val].sum()), "negative": int((1 - y[~val]).sum())},
        "heldout_steps": {"positive": int(y[val].sum()), "negative": int((1 - y[val]).sum())},
        "heldout_episodes": int(n_val),
    }
    return model, report


def save_classifier(path: str | Path, model: SuccessClassifier, report: dict[str, Any]) -> Path:
    """Write the classifier directory atomically (temporary name, then rename)."""
    meta = {"state_dim": model.state_dim, "hidden_dims": model.hidden_dims, "report": report}
    if model.camera:
        meta |= {
            "camera": model.camera,
            "image_size": model.image_size,
            "cnn_channels": model.cnn_channels,
            "image_feature_dim": model.image_feature_dim,
        }
    return save_model_dir(path, model, META_FILE, meta)


def load_classifier(path: str | Path) -> tuple[SuccessClassifier, dict[str, Any]]:
    """The model (eval mode) and its saved report; a one-line ConfigError when ``path`` is not one."""
    state, meta = load_model_dir(path, META_FILE, "a success classifier")
    model = SuccessClassifier(
        int(meta["state_dim"]),
        list(meta["hidden_dims"]),
        str(meta.get("camera", "")),  # files from before image classifiers are state classifiers
        int(meta.get("image_size", 0)),
        meta.get("cnn_channels"),
        int(meta.get("image_feature_dim", 64)),
    )
    model.load_state_dict(state)
    return model.eval(), meta["report"]


class ClassifierRewardWrapper(gym.Wrapper):
    """Reward and success-termination from the classifier (see the module docstring)."""

    def __init__(self, env: gym.Env, model: SuccessClassifier, threshold: float):
        super().__init__(env)
        self.model, self.threshold = model, float(threshold)
        base = env.unwrapped
        if model.camera:
            self.pixels_key = f"pixels/{model.camera}"
            space = getattr(env.observation_space, "spaces", {}).get(self.pixels_key)
            size = model.image_size
            self.render_own = space is None or tuple(space.shape) != (size, size, 3)
            if self.render_own and not hasattr(base, "render_camera"):
                raise ConfigError(
                    f"the {model.camera!r} image classifier needs {self.pixels_key!r} ({size}x{size}) in the "
                    f"observation or a task that can render it; {type(base).__name__} has neither"
                )
        self.terminate_on_success = bool(getattr(base, "terminate_on_success", False))
        if hasattr(base, "terminate_on_success"):
            base.terminate_on_success = False  # the classifier decides when the task is done

    def _input(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        m = self.model
        if not m.camera:
            return np.asarray(obs[STATE_KEY], np.float32)
        if self.render_own:  # the camera at the size the classifier was trained on
            return self.env.unwrapped.render_camera(m.camera, m.image_size, m.image_size)
        return obs[self.pixels_key]

    def step(self, action: Any) -> Any:
        obs, _, terminated, truncated, info = self.env.step(action)
        prob = float(self.model.prob(self._input(obs)[None])[0])
        success = prob >= self.threshold
        info = {**info, "reward_success_prob": prob, "reward_source": "classifier"}
        return obs, float(success), terminated or (success and self.terminate_on_success), truncated, info


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """A uint8 ``[H, W, 3]`` image at ``size``×``size`` (bilinear; unchanged when it already is)."""
    if image.shape[:2] == (size, size):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((size, size), Image.BILINEAR))


_CACHE: dict[str, tuple[SuccessClassifier, dict[str, Any]]] = {}


@REWARDS.register("classifier", ClassifierRewardConfig)
class ClassifierReward:
    source = "classifier"

    def __init__(self, cfg: ClassifierRewardConfig):
        if not cfg.path:
            raise ConfigError("reward=classifier needs reward.path=<dir written by robot-rl-reward-train>")
        self.cfg = cfg
        key = str(Path(cfg.path).resolve())
        if key not in _CACHE:  # every env the trainer makes shares one loaded model
            _CACHE[key] = load_classifier(cfg.path)
        self.model, self.report = _CACHE[key]
        self.threshold = cfg.threshold if cfg.threshold > 0 else float(self.report["threshold"])
        self.model_id = f"robot_rl-classifier-{self.model.camera or 'state'}"
        self.model_revision = Path(cfg.path).name

    def wrap(self, env: gym.Env) -> gym.Env:
        return ClassifierRewardWrapper(env, self.model, self.threshold)

    # --- the frames-based RewardModel interface (image classifiers only) -------------------------
    def score(self, req: RewardRequest) -> RewardResult:
        return self.score_batch([req])[0]

    def score_batch(self, reqs: list[RewardRequest]) -> list[RewardResult]:
        """Judge each request's last frame (see the module docstring); an empty video is flagged."""
        if not self.model.camera:
            raise ConfigError(
                "a state classifier cannot score camera frames; train one on images "
                "(robot-rl-reward-train --camera <name>)"
            )
        started = time.perf_counter()
        size = self.model.image_size
        last = [resize_square(r.frames[-1], size) for r in reqs if len(r.frames)]
        probs = iter(self.model.prob(np.stack(last)) if last else [])
        common = {"model_id": self.model_id, "model_revision": self.model_revision, "prompt_hash": ""}
        results = []
        for req in reqs:
            if len(req.frames) == 0:
                results.append(
                    failed_result(
                        req, error="empty", raw_text="no frames to score", started=started, **common
                    )
                )
                continue
            prob = float(next(probs))
            success = prob >= self.threshold
            results.append(
                RewardResult(
                    score_raw=int(success),
                    progress=prob,
                    success=success,
                    success_prob=prob,
                    parse_ok=True,
                    raw_text=f"p(success)={prob:.4f} threshold={self.threshold:.4f}",
                    frames_used=[len(req.frames) - 1],
                    latency_ms=1e3 * (time.perf_counter() - started),
                    episode_id=req.episode_id,
                    mode=req.mode,
                    **common,
                )
            )
        return results


def main(argv: list[str] | None = None) -> None:
    """``robot-rl-reward-train --store <episode store> --out <dir> [--camera NAME] [--steps N]``."""
    import argparse
    import sys

    from robot_rl.data.demos import load_demos

    parser = argparse.ArgumentParser(prog="robot-rl-reward-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="episode store with successes and failures")
    parser.add_argument("--out", required=True, help="classifier directory to write")
    parser.add_argument(
        "--camera",
        default="",
        help="classify this camera's images (a store recorded with pixels) instead of states",
    )
    parser.add_argument(
        "--steps", type=int, help=f"default {ClassifierTrainConfig.steps}, images {IMAGE_STEPS}"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help=f"default {ClassifierTrainConfig.batch_size}, images {IMAGE_BATCH_SIZE}",
    )
    parser.add_argument("--shift-pad", type=int, default=0, help="random-shift augmentation of images, px")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        episodes = load_demos(args.store, keep_failures=True, cameras=[args.camera] if args.camera else ())
        if not episodes:
            raise DataError(f"{args.store}: no episodes")
        image = bool(args.camera)
        cfg = ClassifierTrainConfig(
            steps=args.steps or (IMAGE_STEPS if image else ClassifierTrainConfig.steps),
            batch_size=args.batch_size or (IMAGE_BATCH_SIZE if image else ClassifierTrainConfig.batch_size),
            seed=args.seed,
            camera=args.camera,
            random_shift_pad=args.shift_pad,
        )
        model, report = train_classifier(episodes, cfg)
    except (DataError, ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    save_classifier(args.out, model, report)
    print(
        f"threshold {report['threshold']:.3f}: precision {report['precision']:.2f}, recall "
        f"{report['recall']:.2f} on {report['heldout_episodes']} held-out episodes -> {args.out}"
    )


if __name__ == "__main__":
    main()
