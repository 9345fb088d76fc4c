"""``diffusion``: a DDPM action-chunk policy (Diffusion Policy, Chi et al. 2023; the base of EXPO/PA-RL).

Model. A denoiser ``ε_θ(x_t, t, c)`` (``diffusion_nets``: FiLM 1-D U-Net or MLP-ResNet) predicts the
noise in a noised action chunk ``x_t [B, Ta, Da]`` (actions are normalized to ``[-1, 1]``) given the
observation features ``c = encoder(normalize(obs_state), obs_pixels)`` (``encoders.ObsEncoder``,
batch keys ``obs_state`` and ``obs_pixels/<camera>``, see that module).

Training (``bc_loss``). Forward process (DDPM eq. 4) ``x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε`` with
``t ~ U{0..T-1}``, ``ε ~ N(0, I)`` (``DDPMScheduler.add_noise``), loss = ε-MSE (DDPM eq. 14, "L_simple")
averaged over the valid steps of each chunk (``action_mask``).

Sampling. ``x_T ~ N(0, I)`` then ``num_inference_steps`` reverse steps of the configured diffusers
sampler: ``ddim`` (η = 0, DDIM eq. 12: ``x_{t'} = √ᾱ_{t'} x̂_0 + √(1-ᾱ_{t'}) ε̂``,
``x̂_0 = (x_t - √(1-ᾱ_t) ε̂)/√ᾱ_t``, clipped to ``[-1, 1]`` if ``clip_sample``), ``dpm``
(DPM-Solver++ 2M) or ``ddpm`` (ancestral). Schedulers are built from this config (never from a hub).
The same ``β`` schedule serves training and every sampler.

EMA. ``ema`` is a parameter-free copy of the model (its weights are buffers, so it is in
``state_dict()`` — bundles and checkpoints carry it — but not in ``parameters()``, so optimizers never
see it). After every optimizer step (``after_optimizer_step``):
``ψ̄ ← d ψ̄ + (1-d) ψ`` with ``d = min(ema_decay, (1+n)/(10+n))`` when ``ema_warmup`` (``n`` = EMA updates
so far, stored in the ``ema_step`` buffer) and ``d = ema_decay`` otherwise. ``act``, ``predict_chunk``
and ``sample`` use the EMA weights (``use_ema=False`` selects the online weights, e.g. for EXPO's TD
target). The EMA copy is always in eval mode (no augmentation).

Randomness. Sampling noise (initial ``x_T``, RTI re-noising, DDPM step noise) is drawn on the CPU from
``policy.generator`` (a ``torch.Generator`` seeded with ``cfg.sample_seed`` at construction) and moved
to the policy's device, so a seed gives the same actions on any device. ``policy.seed(s)`` re-seeds it;
``reset()`` does NOT re-seed (consecutive episodes get fresh noise). Two policies with equal weights
and equal seeds produce identical actions. Training noise (``bc_loss``) uses torch's global RNG.

Real-time-iteration (RTI) warm start (``rti_warm_start``; only in ``act``). Let ``τ_1 > … > τ_S`` be the
sampler's timesteps (``S = num_inference_steps``) and ``k = rti_steps < S``. The first chunk after
``reset()`` is sampled from pure noise with all ``S`` steps. Every later re-plan (after
``execution_horizon = h`` actions were executed) takes the previous chunk ``a [Ta, Da]`` (the clean
sample it produced), shifts it by ``h`` (``a[h:]`` followed by ``h`` copies of ``a[-1]``), noises it to
the level ``τ'`` of the last ``k`` steps of a coarser ``S_w``-step schedule of the same sampler
(``rti_schedule_steps``) with the forward process ``√ᾱ_τ' a_shift + √(1-ᾱ_τ') ε``, and runs those ``k``
steps: ``k`` denoiser evaluations instead of ``S``. With the defaults (T=100, trailing spacing,
S_w = 8 → 99, 87, 74, 61, 49, 37, 24, 11; k = 3) a warm chunk starts at t = 37 and runs t = 37, 24,
11 (each DDIM step jumps ``T // S_w = 12``, as diffusers does). How far to re-noise is a trade-off
measured in docs/benchmarks.md: the fine grid's tail (t = 29, 19, 9) kept a weak base's bad modes
(Lift −7 points), a coarse one (t = 59, 39, 19) lost precision (PegInsert −8); S_w = 8 was within
2 points of full DDIM on both.

Fast sampling path (``policy.fast_sampling``, on by default; same math, tested against the slow
path). Per reverse chain the denoiser's ``x_t``-independent work (time MLP of all ``S`` steps, the
conditioning's share of the first layer) is done once (``denoiser.condition``). For ``ddim`` the
diffusers ``DDIMScheduler.step`` is replaced by :func:`ddim_step` with per-timestep scalar
coefficients that :func:`ddim_coefficients` reads off the diffusers sampler's own ``alphas_cumprod``,
``final_alpha_cumprod`` and step ratio (cached per ``num_inference_steps``); ``dpm`` and ``ddpm``
keep the diffusers ``step``. Without autograd the chain runs under ``torch.inference_mode`` (the
returned chunk is a normal tensor). ``fast_sampling = False`` runs the reference loop (the
denoiser's plain ``forward`` and the scheduler's ``step`` at every step).

Shapes: ``B`` batch, ``n``/``N`` candidates, ``To`` obs history, ``Ta`` chunk, ``Da`` action dim.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from robot_rl.config import check, check_choice, check_positive
from robot_rl.core.networks import ActionNormalizer, StateNormalizer
from robot_rl.core.types import PIXELS_PREFIX, STATE_KEY, ActionSpec, ObsSpec
from robot_rl.policies import POLICIES
from robot_rl.policies.base import PolicyConfig
from robot_rl.policies.bc_chunk import masked_chunk_mse
from robot_rl.policies.diffusion_nets import ConditionalUnet1D, MLPResNetDenoiser
from robot_rl.policies.encoders import OBS_STATE_KEY, ObsEncoder, batch_pixels, pixels_key

DENOISERS = ("unet1d", "mlp_resnet")
SAMPLERS = ("ddim", "dpm", "ddpm")
BETA_SCHEDULES = ("squaredcos_cap_v2", "linear", "scaled_linear")
TIMESTEP_SPACINGS = ("trailing", "leading", "linspace")


@dataclass(frozen=True)
class DiffusionConfig(PolicyConfig):
    name: str = "diffusion"
    obs_horizon: int = 2  # To
    chunk_size: int = 8  # Ta (unet1d: divisible by 2^(len(down_dims)-1))
    execution_horizon: int = 4  # actions executed from each chunk before re-planning
    # --- denoiser ---
    denoiser: str = "mlp_resnet"  # "mlp_resnet" (EXPO / PA-RL form) | "unet1d" (FiLM temporal U-Net)
    down_dims: list[int] = field(default_factory=lambda: [64, 128])  # U-Net channels per level
    kernel_size: int = 5  # U-Net conv kernel along the chunk axis
    n_groups: int = 8  # U-Net GroupNorm groups (divides every entry of down_dims)
    mlp_hidden: int = 256  # MLP-ResNet width
    mlp_blocks: int = 3  # MLP-ResNet residual blocks
    dropout: float = 0.0  # MLP-ResNet dropout (PA-RL uses 0.1)
    time_embed_dim: int = 64  # sinusoidal timestep embedding size (even)
    # --- diffusion process ---
    num_train_timesteps: int = 100  # T of the forward process
    beta_schedule: str = "squaredcos_cap_v2"  # "squaredcos_cap_v2" (cosine) | "linear" | "scaled_linear"
    beta_start: float = 1e-4  # β_1 of the linear schedules (unused by the cosine one)
    beta_end: float = 2e-2  # β_T of the linear schedules
    sampler: str = "ddim"  # "ddim" (η=0) | "dpm" (DPM-Solver++ 2M) | "ddpm" (ancestral)
    num_inference_steps: int = 10  # S reverse steps per chunk
    timestep_spacing: str = "trailing"  # how the S steps are placed in 0..T-1 (diffusers option)
    clip_sample: bool = True  # clip the predicted x̂_0 to [-1, 1] in every step (dpm: via thresholding)
    # --- EMA of the weights (acting uses it) ---
    ema_decay: float = 0.995  # max decay d; 0 keeps the EMA equal to the online weights
    ema_warmup: bool = True  # d_n = min(ema_decay, (1+n)/(10+n))
    # --- real-time-iteration warm start (act only) ---
    rti_warm_start: bool = False  # seed each re-plan with the previous chunk (see module docstring)
    rti_steps: int = 3  # k sampler steps (denoiser evaluations) per warm-started chunk
    # S_w: a warm chunk runs the last k steps of an S_w-step schedule (8: t = 37, 24, 11 of 100)
    rti_schedule_steps: int = 8
    sample_seed: int = 0  # initial seed of the sampling generator (policy.seed(s) re-seeds)
    # --- pixel encoder (only with cameras) ---
    cnn_channels: list[int] = field(default_factory=lambda: [32, 32, 32])  # conv widths per camera
    image_feature_dim: int = 64  # features per camera and frame
    random_shift_pad: int = 4  # DrQ random-shift pad in training mode (0: off)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("policy.denoiser", self.denoiser, DENOISERS)
        check_choice("policy.sampler", self.sampler, SAMPLERS)
        check_choice("policy.beta_schedule", self.beta_schedule, BETA_SCHEDULES)
        check_choice("policy.timestep_spacing", self.timestep_spacing, TIMESTEP_SPACINGS)
        check_positive("policy.num_train_timesteps", self.num_train_timesteps)
        check(
            1 <= self.num_inference_steps <= self.num_train_timesteps,
            f"policy.num_inference_steps={self.num_inference_steps} must be in "
            f"[1, num_train_timesteps={self.num_train_timesteps}]",
        )
        check(
            0.0 < self.beta_start < self.beta_end < 1.0,
            f"policy.beta_start={self.beta_start} and beta_end={self.beta_end} need 0 < start < end < 1",
        )
        check(0.0 <= self.ema_decay < 1.0, f"policy.ema_decay must be in [0, 1), got {self.ema_decay}")
        check(0.0 <= self.dropout < 1.0, f"policy.dropout must be in [0, 1), got {self.dropout}")
        check(
            self.time_embed_dim >= 4 and self.time_embed_dim % 2 == 0,
            f"policy.time_embed_dim must be even and >= 4, got {self.time_embed_dim}",
        )
        if self.rti_warm_start:
            check(
                1 <= self.rti_steps < self.num_inference_steps,
                f"policy.rti_steps={self.rti_steps} must be in [1, num_inference_steps="
                f"{self.num_inference_steps}) for the RTI warm start",
            )
            check(
                self.rti_steps < self.rti_schedule_steps <= self.num_train_timesteps,
                f"policy.rti_schedule_steps={self.rti_schedule_steps} must be in (rti_steps="
                f"{self.rti_steps}, num_train_timesteps={self.num_train_timesteps}]",
            )
        check_positive("policy.mlp_hidden", self.mlp_hidden)
        check_positive("policy.mlp_blocks", self.mlp_blocks)
        check(
            len(self.down_dims) > 0 and all(d > 0 and d % self.n_groups == 0 for d in self.down_dims),
            f"policy.down_dims={self.down_dims} must be positive multiples of n_groups={self.n_groups}",
        )
        check(
            self.kernel_size > 0 and self.kernel_size % 2 == 1,
            f"policy.kernel_size must be odd, got {self.kernel_size}",
        )
        if self.denoiser == "unet1d":
            factor = 2 ** (len(self.down_dims) - 1)
            check(
                self.chunk_size % factor == 0,
                f"policy.chunk_size={self.chunk_size} must be divisible by {factor} for a "
                f"{len(self.down_dims)}-level unet1d (or use fewer down_dims)",
            )
        check(
            len(self.cnn_channels) > 0 and all(c > 0 for c in self.cnn_channels),
            f"policy.cnn_channels must be positive widths, got {self.cnn_channels}",
        )
        check_positive("policy.image_feature_dim", self.image_feature_dim)
        check_positive("policy.random_shift_pad", self.random_shift_pad, allow_zero=True)


# --- schedulers (diffusers, imported lazily) ---


def _scheduler_kwargs(cfg: DiffusionConfig) -> dict[str, Any]:
    return {
        "num_train_timesteps": cfg.num_train_timesteps,
        "beta_schedule": cfg.beta_schedule,
        "beta_start": cfg.beta_start,
        "beta_end": cfg.beta_end,
        "prediction_type": "epsilon",
        "timestep_spacing": cfg.timestep_spacing,
    }


def make_noise_scheduler(cfg: DiffusionConfig) -> Any:
    """The training forward process ``q(x_t | x_0)``: a ``DDPMScheduler`` built from ``cfg``."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**_scheduler_kwargs(cfg), clip_sample=cfg.clip_sample)


def make_sampler(cfg: DiffusionConfig, num_inference_steps: int | None = None) -> Any:
    """The reverse-process scheduler of ``cfg.sampler`` with ``set_timesteps`` done (``num_inference_steps``,
    default ``cfg.num_inference_steps``)."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    kwargs = _scheduler_kwargs(cfg)
    if cfg.sampler == "ddim":
        sched = DDIMScheduler(**kwargs, clip_sample=cfg.clip_sample, set_alpha_to_one=True)
    elif cfg.sampler == "ddpm":
        sched = DDPMScheduler(**kwargs, clip_sample=cfg.clip_sample, variance_type="fixed_small")
    else:
        # with sample_max_value = 1 dynamic thresholding clips x̂_0 to [-1, 1], as clip_sample does
        sched = DPMSolverMultistepScheduler(
            **kwargs,
            algorithm_type="dpmsolver++",
            solver_order=2,
            thresholding=cfg.clip_sample,
            sample_max_value=1.0,
        )
    sched.set_timesteps(num_inference_steps or cfg.num_inference_steps)
    return sched


class DDIMCoefficients(NamedTuple):
    """Scalars (0-dim float32 tensors) of one η = 0 DDIM step from ``t`` to ``t' = t - T // S``."""

    sqrt_alpha: torch.Tensor  # √ᾱ_t
    sqrt_one_minus_alpha: torch.Tensor  # √(1-ᾱ_t)
    sqrt_alpha_prev: torch.Tensor  # √ᾱ_t' (ᾱ_t' = final_alpha_cumprod when t' < 0)
    sqrt_one_minus_alpha_prev: torch.Tensor  # √(1-ᾱ_t')


def ddim_coefficients(
    alphas_cumprod: torch.Tensor, final_alpha_cumprod: torch.Tensor, step_ratio: int
) -> list[DDIMCoefficients]:
    """Coefficients of a DDIM step from every training timestep ``t = 0 … T-1`` (list index ``t``).

    ``alphas_cumprod [T]`` and ``final_alpha_cumprod []`` as a ``DDIMScheduler`` holds them,
    ``step_ratio = T // num_inference_steps`` (diffusers steps from ``t`` to ``t - step_ratio`` for
    every timestep spacing). Computed in the schedule's dtype (float32) as diffusers does; kept as
    0-dim tensors, which PyTorch multiplies into a tensor without the conversion a Python float needs.
    """
    ab = alphas_cumprod
    prev = torch.arange(ab.shape[0]) - step_ratio
    ab_prev = torch.where(prev >= 0, ab[prev.clamp(min=0)], final_alpha_cumprod.to(ab.dtype))
    table = torch.stack([ab**0.5, (1 - ab) ** 0.5, ab_prev**0.5, (1 - ab_prev) ** 0.5], dim=1)  # [T, 4]
    return [DDIMCoefficients(*row.unbind()) for row in table]


def ddim_coefficients_of(sched: Any) -> list[DDIMCoefficients]:
    """:func:`ddim_coefficients` of a diffusers ``DDIMScheduler`` after ``set_timesteps``."""
    cfg = sched.config
    if cfg.prediction_type != "epsilon" or cfg.thresholding:
        raise ValueError("the fast DDIM step supports ε-prediction without thresholding only")
    step_ratio = cfg.num_train_timesteps // sched.num_inference_steps
    return ddim_coefficients(sched.alphas_cumprod, sched.final_alpha_cumprod, step_ratio)


def ddim_step(
    x: torch.Tensor, eps: torch.Tensor, coef: DDIMCoefficients, clip_range: float | None
) -> torch.Tensor:
    """One deterministic DDIM step ``x_t -> x_t'`` (η = 0), ``x``, ``eps`` ``[M, Ta, Da]``.

    ``x̂_0 = (x_t - √(1-ᾱ_t) ε̂) / √ᾱ_t`` (DDIM eq. 9), clipped to ``±clip_range`` unless ``None``;
    ``x_t' = √ᾱ_t' x̂_0 + √(1-ᾱ_t') ε̂`` (DDIM eq. 12 with σ = 0). Same operation order as
    ``DDIMScheduler.step``.
    """
    x0 = (x - coef.sqrt_one_minus_alpha * eps) / coef.sqrt_alpha
    if clip_range is not None:
        x0 = x0.clamp(-clip_range, clip_range)
    return coef.sqrt_alpha_prev * x0 + coef.sqrt_one_minus_alpha_prev * eps


# --- models ---


class DiffusionModel(nn.Module):
    """Observation encoder + denoiser: the trained weights (and, as a buffer-only copy, the EMA)."""

    def __init__(self, cfg: DiffusionConfig, obs_spec: ObsSpec, action_spec: ActionSpec):
        super().__init__()
        self.encoder = ObsEncoder(
            obs_spec, cfg.obs_horizon, cfg.cnn_channels, cfg.image_feature_dim, cfg.random_shift_pad
        )
        cond_dim = self.encoder.out_dim
        if cfg.denoiser == "unet1d":
            self.denoiser: nn.Module = ConditionalUnet1D(
                action_spec.dim, cond_dim, cfg.down_dims, cfg.kernel_size, cfg.n_groups, cfg.time_embed_dim
            )
        else:
            self.denoiser = MLPResNetDenoiser(
                action_spec.dim,
                cfg.chunk_size,
                cond_dim,
                cfg.mlp_hidden,
                cfg.mlp_blocks,
                cfg.time_embed_dim,
                cfg.dropout,
            )


def _parameters_to_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter of ``module`` into a (persistent) buffer of the same name, in place."""
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is None:
                continue
            del sub._parameters[name]
            sub.register_buffer(name, param.detach().clone())
    return module


# --- policy ---


@POLICIES.register("diffusion", DiffusionConfig)
class DiffusionPolicy(nn.Module):
    """Diffusion action-chunk policy; see the module docstring for the math, EMA, seeding and RTI.

    ``state_dict`` keys: ``normalizer.*`` (state statistics), ``model.*`` (trained weights),
    ``ema.*`` (EMA weights, used to act), ``ema_step``.
    """

    def __init__(self, cfg: DiffusionConfig, obs_spec: ObsSpec, action_spec: ActionSpec):
        super().__init__()
        self.cfg = cfg
        self.obs_spec = obs_spec
        self.action_spec = action_spec
        self.cameras = sorted(obs_spec.cameras)
        self.normalizer = StateNormalizer(obs_spec.state_dim)
        self.action_normalizer = ActionNormalizer(action_spec.dim, headroom=cfg.action_headroom)
        self.model = DiffusionModel(cfg, obs_spec, action_spec)
        self.ema = _parameters_to_buffers(copy.deepcopy(self.model)).eval()
        self.register_buffer("ema_step", torch.zeros((), dtype=torch.long))
        self.noise_scheduler = make_noise_scheduler(cfg)
        self.sampler = make_sampler(cfg)
        self.timesteps: list[int] = [int(t) for t in self.sampler.timesteps]  # τ_1 > … > τ_S
        self._rti: tuple[tuple[int, int], Any, list[int]] | None = None  # see _rti_chain
        self.generator = torch.Generator().manual_seed(cfg.sample_seed)
        self._history: deque[dict[str, np.ndarray]] = deque(maxlen=cfg.obs_horizon)
        self._queue: deque[np.ndarray] = deque()
        self._prev_chunk: torch.Tensor | None = None  # [1, Ta, Da], the last chunk act() sampled
        self.fast_sampling = True  # False: reference loop (plain denoiser forward + scheduler.step)
        self._ddim_cache: dict[int, list[DDIMCoefficients]] = {}  # steps of a sampler -> coefficients

    # --- bookkeeping ---

    @property
    def device(self) -> torch.device:
        return self.normalizer.mean.device

    def train(self, mode: bool = True) -> DiffusionPolicy:
        super().train(mode)
        self.ema.train(False)  # the EMA copy only ever runs inference
        return self

    def seed(self, seed: int) -> None:
        """Re-seed the sampling noise generator (``reset()`` does not)."""
        self.generator.manual_seed(int(seed))

    def fit_normalizer(self, states: np.ndarray, actions: np.ndarray | None = None) -> None:
        self.normalizer.fit(torch.as_tensor(states, dtype=torch.float32, device=self.device))
        if actions is not None:
            self.action_normalizer.fit(torch.as_tensor(actions, dtype=torch.float32, device=self.device))

    def reset(self) -> None:
        """Forget the observation history, the queued actions and the RTI warm-start chunk."""
        self._history.clear()
        self._queue.clear()
        self._prev_chunk = None

    # --- diffusion ---

    def _noise(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator).to(self.device)

    def encode(self, obs_batch: dict[str, torch.Tensor], use_ema: bool = True) -> torch.Tensor:
        """Observation features ``c [B, Dc]`` from ``obs_state [B, To, Ds]`` (+ ``obs_pixels/<cam>``)."""
        net = self.ema if use_ema else self.model
        state = self.normalizer(obs_batch[OBS_STATE_KEY].float())
        return net.encoder(state, batch_pixels(obs_batch, self.cameras))

    def denoise(
        self,
        cond: torch.Tensor,
        x: torch.Tensor,
        timesteps: list[int],
        use_ema: bool = True,
        sampler: Any = None,
    ) -> torch.Tensor:
        """Run the reverse steps ``timesteps`` of ``sampler`` (default ``self.sampler``) from
        ``x [M, Ta, Da]`` (at level ``timesteps[0]``).

        ``cond [M, Dc]``. Returns the clean chunk ``[M, Ta, Da]`` clamped to ``[-1, 1]``. Uses the fast
        path unless ``self.fast_sampling`` is False (see the module docstring).
        """
        sampler = self.sampler if sampler is None else sampler
        if not self.fast_sampling:
            return self._denoise_reference(cond, x, timesteps, use_ema, sampler)
        if torch.is_grad_enabled():  # e.g. backpropagating through the chain: keep autograd
            return self._denoise_fast(cond, x, timesteps, use_ema, sampler).clamp(-1.0, 1.0)
        with torch.inference_mode():  # cheaper per op than no_grad
            x = self._denoise_fast(cond, x, timesteps, use_ema, sampler)
        return x.clamp(-1.0, 1.0)  # outside inference mode: a normal tensor again

    def _denoise_fast(
        self, cond: torch.Tensor, x: torch.Tensor, timesteps: list[int], use_ema: bool, sched: Any
    ) -> torch.Tensor:
        """The fast reverse chain (see the module docstring), without the final clamp."""
        denoiser = (self.ema if use_ema else self.model).denoiser
        t_all = torch.tensor(timesteps, device=x.device)
        step_conds = denoiser.condition(t_all, cond)  # x_t-independent work, once per chain
        t_rows = t_all[:, None].expand(-1, x.shape[0])  # [S, M]
        ddim, clip = None, None
        if self.cfg.sampler == "ddim":
            ddim = self._ddim_coefficients(sched)
            clip = float(sched.config.clip_sample_range) if sched.config.clip_sample else None
        if self.cfg.sampler == "dpm":  # multistep solver: clear the history of earlier calls
            sched.set_timesteps(sched.num_inference_steps)
        for i, t in enumerate(timesteps):
            eps = denoiser(x, t_rows[i], cond, step_cond=step_conds[i])
            if ddim is not None:
                x = ddim_step(x, eps, ddim[t], clip)
            elif self.cfg.sampler == "ddpm":
                x = sched.step(eps, t, x, generator=self.generator, return_dict=False)[0]
            else:
                x = sched.step(eps, t, x, return_dict=False)[0]
        return x

    def _denoise_reference(
        self, cond: torch.Tensor, x: torch.Tensor, timesteps: list[int], use_ema: bool, sched: Any
    ) -> torch.Tensor:
        """:meth:`denoise` step by step with the denoiser's plain forward and the scheduler's ``step``."""
        denoiser = (self.ema if use_ema else self.model).denoiser
        if self.cfg.sampler == "dpm":
            sched.set_timesteps(sched.num_inference_steps)
        for t in timesteps:
            eps = denoiser(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long), cond)
            if self.cfg.sampler == "ddpm":
                x = sched.step(eps, t, x, generator=self.generator, return_dict=False)[0]
            else:
                x = sched.step(eps, t, x, return_dict=False)[0]
        return x.clamp(-1.0, 1.0)

    def _ddim_coefficients(self, sampler: Any) -> list[DDIMCoefficients]:
        """The DDIM step scalars of a sampler of this policy, computed once per step count."""
        steps = sampler.num_inference_steps
        if steps not in self._ddim_cache:
            with torch.inference_mode(False):  # normal tensors: autograd may need them later
                self._ddim_cache[steps] = ddim_coefficients_of(sampler)
        return self._ddim_cache[steps]

    @torch.no_grad()
    def predict_chunk(
        self,
        obs_state: torch.Tensor,
        pixels: dict[str, torch.Tensor] | None = None,
        warm_start: torch.Tensor | None = None,
        use_ema: bool = True,
    ) -> torch.Tensor:
        """One sampled chunk ``[B, Ta, Da]`` (env units, in ``[-1, 1]``) for ``obs_state [B, To, Ds]``.

        ``pixels``: camera -> uint8 ``[B, To, H, W, 3]`` (required when the spec has cameras).

        ``warm_start [B, Ta, Da]``: an RTI initial guess (already shifted); it is noised to
        ``τ_{S-k+1}`` and only the last ``k = rti_steps`` sampler steps run.
        """
        batch = {OBS_STATE_KEY: obs_state, **{pixels_key(c): v for c, v in (pixels or {}).items()}}
        cond = self.encode(batch, use_ema)
        shape = (obs_state.shape[0], self.cfg.chunk_size, self.action_spec.dim)
        if warm_start is None:
            return self._to_env(self.denoise(cond, self._noise(shape), self.timesteps, use_ema))
        sampler, steps = self._rti_chain()
        t0 = torch.full((shape[0],), steps[0], dtype=torch.long, device=self.device)
        warm = self.action_normalizer.normalize(warm_start)
        x = self.noise_scheduler.add_noise(warm, self._noise(shape), t0)  # DDPM eq. 4 at the grid's τ
        return self._to_env(self.denoise(cond, x, steps, use_ema, sampler))

    def _rti_chain(self) -> tuple[Any, list[int]]:
        """The warm chunk's sampler (``rti_schedule_steps`` steps) and its last ``rti_steps`` timesteps,
        built on first use (and again if the config changed)."""
        key = (self.cfg.rti_schedule_steps, self.cfg.rti_steps)
        if self._rti is None or self._rti[0] != key:
            sampler = make_sampler(self.cfg, self.cfg.rti_schedule_steps)
            self._rti = (key, sampler, [int(t) for t in sampler.timesteps][-self.cfg.rti_steps :])
        return self._rti[1], self._rti[2]

    def _to_env(self, normalized: torch.Tensor) -> torch.Tensor:
        """Sampler output (normalized action space) -> env units, clipped to the action box."""
        return self.action_normalizer.denormalize(normalized).clamp(-1.0, 1.0)

    @torch.no_grad()
    def sample(self, obs_batch: dict[str, torch.Tensor], n: int, use_ema: bool = True) -> torch.Tensor:
        """``n`` independent chunks per observation in one batched reverse process: ``[B, n, Ta, Da]``.

        ``obs_batch``: ``obs_state [B, To, Ds]`` and, with cameras, ``obs_pixels/<cam> [B, To, H, W, 3]``.
        """
        cond = self.encode(obs_batch, use_ema)
        b = cond.shape[0]
        cond = cond.repeat_interleave(n, dim=0)  # [B·n, Dc], candidate-major within each observation
        x = self._noise((b * n, self.cfg.chunk_size, self.action_spec.dim))
        chunks = self._to_env(self.denoise(cond, x, self.timesteps, use_ema))
        return chunks.view(b, n, self.cfg.chunk_size, -1)

    # --- acting ---

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """One control step ``[Da]`` from the chunk queue; re-plans every ``execution_horizon`` steps."""
        frame = {STATE_KEY: np.asarray(obs[STATE_KEY], dtype=np.float32)}
        for cam in self.cameras:
            frame[cam] = np.asarray(obs[PIXELS_PREFIX + cam], dtype=np.uint8)
        if not self._history:  # pad the history with the first observation of the episode
            self._history.extend([frame] * self.cfg.obs_horizon)
        else:
            self._history.append(frame)
        if not self._queue:
            state = torch.as_tensor(np.stack([f[STATE_KEY] for f in self._history]), device=self.device)
            pixels = {
                cam: torch.as_tensor(np.stack([f[cam] for f in self._history]), device=self.device)[None]
                for cam in self.cameras
            }
            warm = None
            if self.cfg.rti_warm_start and self._prev_chunk is not None:
                h = self.cfg.execution_horizon
                prev = self._prev_chunk
                warm = torch.cat([prev[:, h:], prev[:, -1:].expand(-1, h, -1)], dim=1)  # shift, pad last
            chunk = self.predict_chunk(state[None], pixels, warm_start=warm)
            self._prev_chunk = chunk
            self._queue.extend(chunk[0, : self.cfg.execution_horizon].cpu().numpy())
        return self._queue.popleft()

    # --- training ---

    def bc_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """ε-prediction MSE over the valid chunk steps (DDPM eq. 14).

        ``batch``: ``obs_state [B, To, Ds]`` (+ ``obs_pixels/<cam>``), ``action [B, Ta, Da]``,
        ``action_mask [B, Ta]``.
        """
        x0 = self.action_normalizer.normalize(batch["action"])  # diffuse in the normalized action space
        cond = self.encode(batch, use_ema=False)
        eps = torch.randn_like(x0)
        t = torch.randint(0, self.cfg.num_train_timesteps, (x0.shape[0],), device=x0.device)
        x_t = self.noise_scheduler.add_noise(x0, eps, t)  # √ᾱ_t x_0 + √(1-ᾱ_t) ε (DDPM eq. 4)
        return masked_chunk_mse(self.model.denoiser(x_t, t, cond), eps, batch["action_mask"])

    @torch.no_grad()
    def ema_decay_now(self) -> float:
        """The decay the next EMA update uses (warm-up: ``min(ema_decay, (1+n)/(10+n))``)."""
        n = int(self.ema_step)
        return min(self.cfg.ema_decay, (1 + n) / (10 + n)) if self.cfg.ema_warmup else self.cfg.ema_decay

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """EMA update ``ψ̄ ← d ψ̄ + (1-d) ψ`` of every weight (buffers such as norms' stats are copied)."""
        decay = self.ema_decay_now()
        ema = dict(self.ema.named_buffers())
        for name, param in self.model.named_parameters():
            ema[name].lerp_(param.detach(), 1.0 - decay)  # ψ̄ + (1-d)(ψ - ψ̄)
        for name, buf in self.model.named_buffers():
            if name in ema:
                ema[name].copy_(buf)
        self.ema_step += 1
