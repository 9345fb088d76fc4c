"""Vectorized critic ensemble, Q reductions and Polyak averaging (ALGORITHMS.md §11.5).

All ``K`` heads live in one module: every layer is a batched matmul over a leading head dimension
(``EnsembleLinear``), so a forward pass costs the same number of kernel launches for 2 or 10 heads.

Shapes: ``B`` batch (any leading dims are allowed and flattened), ``K`` heads, ``Do`` observation
features, ``Da`` action dim, ``Nb`` HL-Gauss bins.

Typical use (ResFiT, §1(b) 7a)::

    critic = CriticEnsemble(obs_dim, act_dim, num_heads=10)
    target = copy.deepcopy(critic).requires_grad_(False)
    target_red, actor_red = Reduction.parse("min_subset:2"), Reduction.parse("mean")
    y = td_target(batch["reward"], batch["discount"], target_red(target(next_obs, next_a), gen))
    loss = critic_loss(critic(obs, batch["action"]), y)
    polyak_update(target, critic, tau=0.005)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

# --- layers ---


class EnsembleLinear(nn.Module):
    """``K`` independent linear layers applied with one batched matmul.

    ``weight [K, in, out]``, ``bias [K, 1, out]``; each head is initialized like ``nn.Linear``
    (uniform ±1/√in for weights and biases).
    """

    def __init__(self, in_features: int, out_features: int, num_heads: int):
        super().__init__()
        self.in_features, self.out_features, self.num_heads = in_features, out_features, num_heads
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(num_heads, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_heads, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, in]`` (shared by all heads) or ``[K', B, in]`` (one input per head) -> ``[K', B, out]``.

        ``heads`` (int64 ``[K']``) runs only those heads; ``None`` runs all ``K``.
        """
        weight, bias = self.weight, self.bias
        if heads is not None:
            weight, bias = weight.index_select(0, heads), bias.index_select(0, heads)
        if x.dim() == 2:  # shared input: [B, in] @ [K, in, out] broadcasts to [K, B, out]
            return torch.matmul(x, weight) + bias
        return torch.baddbmm(bias, x, weight)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, heads={self.num_heads}"


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dim with a separate affine ``(weight, bias) [K, 1, D]`` per head."""

    def __init__(self, dim: int, num_heads: int, eps: float = 1e-5):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.ones(num_heads, 1, dim))
        self.bias = nn.Parameter(torch.zeros(num_heads, 1, dim))

    def forward(self, x: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
        """``[K', B, D] -> [K', B, D]``; ``heads`` as in :class:`EnsembleLinear`."""
        weight, bias = self.weight, self.bias
        if heads is not None:
            weight, bias = weight.index_select(0, heads), bias.index_select(0, heads)
        return torch.addcmul(bias, F.layer_norm(x, (self.dim,), eps=self.eps), weight)


# --- HL-Gauss (Farebrother et al. 2024, "Stop Regressing") ---


def hl_gauss_support(v_min: float, v_max: float, num_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin edges ``[Nb + 1]`` and centers ``[Nb]`` of a uniform support on ``[v_min, v_max]``."""
    edges = torch.linspace(v_min, v_max, num_bins + 1)
    return edges, (edges[:-1] + edges[1:]) / 2


def hl_gauss_projection(
    target: torch.Tensor, v_min: float, v_max: float, num_bins: int, sigma: float
) -> torch.Tensor:
    """Histogram of ``N(y, σ²)`` on the bins, renormalized to the support (sums to 1).

    ``p_i = (Φ((e_{i+1} - y)/σ) - Φ((e_i - y)/σ)) / (Φ((v_max - y)/σ) - Φ((v_min - y)/σ))``.
    Targets outside ``[v_min, v_max]`` are clamped into it first.

    Args:
        target: ``[...]`` scalar targets. Returns: ``[..., Nb]`` probabilities.
    """
    edges = torch.linspace(v_min, v_max, num_bins + 1, device=target.device, dtype=target.dtype)
    y = target.clamp(v_min, v_max).unsqueeze(-1)
    cdf = torch.special.erf((edges - y) / (math.sqrt(2.0) * sigma))
    probs = cdf[..., 1:] - cdf[..., :-1]
    return probs / (cdf[..., -1:] - cdf[..., :1])


# --- critic ensemble ---


class CriticEnsemble(nn.Module):
    """``K`` MLP critics ``Q^k(s, a)`` on ``[obs_features, action]``, batched over heads (§11.5).

    Each head is ``Linear -> [LayerNorm] -> ReLU`` per hidden width, then a linear output layer
    (1 unit, or ``num_bins`` logits for the HL-Gauss distributional head).

    Args:
        obs_dim: ``Do``; action_dim: ``Da``; num_heads: ``K``; hidden: hidden widths;
        layer_norm: LayerNorm after every hidden linear layer (RLPD/ResFiT: on).
        num_bins: ``None`` for a scalar critic, else the HL-Gauss bin count (ResFiT 51, PA-RL 128).
        v_min, v_max: HL-Gauss support; sigma: Gaussian width, default ``0.75·(v_max - v_min)/Nb``.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        num_heads: int = 10,
        hidden: Sequence[int] = (256, 256),
        layer_norm: bool = True,
        num_bins: int | None = None,
        v_min: float = 0.0,
        v_max: float = 100.0,
        sigma: float | None = None,
    ):
        super().__init__()
        if num_heads < 1:
            raise ValueError(f"CriticEnsemble: num_heads must be >= 1, got {num_heads}")
        self.num_heads, self.num_bins = num_heads, num_bins
        layers: list[nn.Module] = []
        width = obs_dim + action_dim
        for h in hidden:
            layers.append(EnsembleLinear(width, h, num_heads))
            if layer_norm:
                layers.append(EnsembleLayerNorm(h, num_heads))
            layers.append(nn.ReLU())
            width = h
        layers.append(EnsembleLinear(width, num_bins or 1, num_heads))
        self.net = nn.Sequential(*layers)
        if num_bins is not None:
            if not v_max > v_min:
                raise ValueError(f"CriticEnsemble: need v_max > v_min, got [{v_min}, {v_max}]")
            self.v_min, self.v_max = float(v_min), float(v_max)
            self.sigma = float(sigma) if sigma is not None else 0.75 * (v_max - v_min) / num_bins
            self.register_buffer("centers", hl_gauss_support(v_min, v_max, num_bins)[1])

    @property
    def distributional(self) -> bool:
        return self.num_bins is not None

    def _run(
        self, obs: torch.Tensor, action: torch.Tensor, heads: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[int, ...]]:
        lead = obs.shape[:-1]
        x = torch.cat([obs, action], dim=-1).reshape(-1, obs.shape[-1] + action.shape[-1])
        for layer in self.net:
            x = layer(x, heads) if isinstance(layer, (EnsembleLinear, EnsembleLayerNorm)) else layer(x)
        return x, tuple(lead)

    def logits(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """HL-Gauss logits ``[K, *lead, Nb]`` for ``obs [*lead, Do]``, ``action [*lead, Da]``."""
        if not self.distributional:
            raise ValueError("CriticEnsemble.logits: this critic is scalar (num_bins=None)")
        out, lead = self._run(obs, action)
        return out.reshape(self.num_heads, *lead, self.num_bins)

    def to_scalar(self, logits: torch.Tensor) -> torch.Tensor:
        """Expected value ``Σ_i softmax(logits)_i · c_i``: ``[..., Nb] -> [...]``."""
        return torch.softmax(logits, dim=-1) @ self.centers

    def forward(
        self, obs: torch.Tensor, action: torch.Tensor, heads: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scalar Q per head: ``obs [*lead, Do]``, ``action [*lead, Da]`` -> ``q [K, *lead]``.

        ``lead`` is usually ``(B,)``; ``(B, N)`` scores ``N`` candidate actions per state (§11.7).
        ``heads`` (int64 ``[K']``) evaluates only those heads (``q [K', *lead]``), e.g. the REDQ
        subset of a target. For a distributional critic this is ``to_scalar(logits)``.
        """
        out, lead = self._run(obs, action, heads)
        if self.distributional:
            out = self.to_scalar(out)
        return out.reshape(-1, *lead)


# --- reductions over heads (§11.5: target / actor / selection reductions are configured separately) ---


def reduce_mean(q: torch.Tensor) -> torch.Tensor:
    """Mean over heads ``[K, ...] -> [...]`` (ResFiT/EXPO actor, PA-RL ranking)."""
    return q.mean(0)


def reduce_min(q: torch.Tensor) -> torch.Tensor:
    """Min over all heads ``[K, ...] -> [...]`` (WSRL actor, clipped double-Q with K = 2)."""
    return q.min(0).values


def reduce_min_random_subset(
    q: torch.Tensor, subset_size: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """REDQ target: min over ``M`` heads drawn **without replacement** (§11.5), ``[K, ...] -> [...]``.

    One subset is drawn per call and shared by the whole batch (ResFiT ``randperm``, EXPO
    ``choice(replace=False)``). ``M ≥ K`` reduces to the min over all heads.

    Args:
        q: ``[K, ...]``; subset_size: ``M``; generator: CPU torch RNG for the draw (``None``: global).
    """
    idx = random_subset(q.shape[0], subset_size, generator)
    return reduce_min(q if idx is None else q.index_select(0, idx.to(q.device)))


def random_subset(
    num_heads: int, subset_size: int, generator: torch.Generator | None = None
) -> torch.Tensor | None:
    """``M`` head indices drawn without replacement (int64 ``[M]``), or ``None`` when ``M ≥ K``."""
    if subset_size >= num_heads:
        return None
    return torch.randperm(num_heads, generator=generator)[:subset_size]


@dataclass(frozen=True)
class Reduction:
    """A named reduction over critic heads, configurable from a string.

    ``"mean"``, ``"min"``, or ``"min_subset:M"`` (REDQ, M heads without replacement). Call it as
    ``Reduction.parse("min_subset:2")(q, generator) -> [B]``.
    """

    kind: str = "mean"
    subset_size: int = 2

    def __post_init__(self) -> None:
        if self.kind not in ("mean", "min", "min_subset"):
            raise ValueError(f"Reduction: unknown kind {self.kind!r}; use mean, min or min_subset:M")
        if self.subset_size < 1:
            raise ValueError(f"Reduction: subset_size must be >= 1, got {self.subset_size}")

    @classmethod
    def parse(cls, spec: str | Reduction) -> Reduction:
        """``"mean" | "min" | "min_subset:M"`` -> ``Reduction``."""
        if isinstance(spec, Reduction):
            return spec
        kind, _, arg = spec.strip().partition(":")
        if kind == "min_subset":
            if not arg.isdigit():
                raise ValueError(f"Reduction: expected 'min_subset:M' with integer M, got {spec!r}")
            return cls(kind, int(arg))
        if arg:
            raise ValueError(f"Reduction: {kind!r} takes no argument, got {spec!r}")
        return cls(kind)

    def __str__(self) -> str:
        return f"min_subset:{self.subset_size}" if self.kind == "min_subset" else self.kind

    def __call__(self, q: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.kind == "mean":
            return reduce_mean(q)
        if self.kind == "min":
            return reduce_min(q)
        return reduce_min_random_subset(q, self.subset_size, generator)

    def of_critic(
        self,
        critic: CriticEnsemble,
        obs: torch.Tensor,
        action: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``self(critic(obs, action), generator)`` without evaluating heads the reduction ignores:
        for ``min_subset:M`` only the ``M`` drawn heads run (same draw, same value, ``M/K`` the cost)."""
        if self.kind != "min_subset":
            return self(critic(obs, action), generator)
        heads = random_subset(critic.num_heads, self.subset_size, generator)
        return reduce_min(critic(obs, action, None if heads is None else heads.to(obs.device)))


def check_reductions(cfg: object, *fields: str) -> None:
    """Config validation: each named field of ``cfg`` must parse as a :class:`Reduction` (one-line error)."""
    from robot_rl.core.errors import ConfigError

    for name in fields:
        try:
            Reduction.parse(getattr(cfg, name))
        except ValueError as err:
            raise ConfigError(f"algo.{name}: {err}") from err


# --- target networks ---


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """In place: ``θ' ← (1 - τ)·θ' + τ·θ`` for every parameter; buffers are copied exactly.

    Both modules must have the same structure (e.g. ``target = copy.deepcopy(source)``). Uses one
    fused ``_foreach_lerp_`` over all parameters (no per-tensor Python arithmetic).
    """
    t_params, s_params = list(target.parameters()), list(source.parameters())
    if len(t_params) != len(s_params):
        raise ValueError("polyak_update: target and source have different parameter counts")
    torch._foreach_lerp_(t_params, s_params, tau)
    for tb, sb in zip(target.buffers(), source.buffers()):
        tb.copy_(sb)
