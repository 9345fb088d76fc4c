"""Actor heads for off-policy fine-tuning (ALGORITHMS.md §11.8).

- :class:`ResidualHead`: ResFiT's bounded deterministic residual ``δ = α·tanh(f(x))`` with a
  zero-initialized last layer, so ``compose_action(base, δ) == base`` exactly before training (§1(a)).
- :class:`TanhGaussianHead`: SAC's squashed Gaussian, optionally scaled by β (EXPO edit policy, §2).
- :class:`LearnedTemperature`: SAC temperature ``α = exp(log α)`` with an entropy target.

Shapes: ``B`` batch (any leading dims), ``Din`` input features, ``Da`` action dim.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from robot_rl.core.losses import temperature_loss
from robot_rl.core.networks import mlp

_LOG2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def compose_action(
    base: torch.Tensor,
    delta: torch.Tensor,
    low: float | torch.Tensor = -1.0,
    high: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """Executed action ``A(a_b, δ) = clip(a_b + δ, low, high)`` (§1(c)); ``[B, Da]`` each."""
    return torch.clamp(base + delta, low, high)


class ResidualHead(nn.Module):
    """Bounded residual ``δ = α·tanh(f(x))``, ``|δ| < α`` per dimension (§1(b) 5a/7b).

    ``f`` is :func:`robot_rl.core.networks.mlp`; the weights **and** bias of its last linear layer
    are zero, so ``δ == 0`` exactly at initialization (ResFiT ``actor_last_layer_init_scale=0``).
    Gradients still reach the last layer (``∂δ/∂W_last = α·h``), so learning starts immediately.

    Args:
        in_dim: ``Din``, usually ``obs_features + Da`` (ResFiT feeds ``[s, a_b]``).
        action_dim: ``Da``; hidden: hidden widths; scale: ``α`` (fraction of the [-1,1] range);
        layer_norm: LayerNorm in the hidden layers.
    """

    def __init__(
        self,
        in_dim: int,
        action_dim: int,
        hidden: Sequence[int] = (256, 256),
        scale: float = 0.1,
        layer_norm: bool = True,
    ):
        super().__init__()
        self.scale = float(scale)
        self.net = mlp(in_dim, hidden, action_dim, layer_norm=layer_norm)
        last = self.net[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, Din] -> δ [B, Da]``."""
        return self.scale * torch.tanh(self.net(x))


def tanh_gaussian_log_prob(
    u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    """``log π(a)`` of ``a = β·tanh(u)``, ``u ~ N(mean, exp(log_std)²)``, summed over the last dim.

    Change of variables: ``log π(a) = Σ_j [log N(u_j) - log(1 - tanh²(u_j))] - Da·log β``, with the
    stable identity ``log(1 - tanh²(u)) = 2·(log 2 - u - softplus(-2u))``.

    Args:
        u: ``[B, Da]`` pre-squash sample; mean, log_std: ``[B, Da]``; scale: β.

    Returns:
        ``[B]`` log-density.
    """
    z = (u - mean) * torch.exp(-log_std)
    gauss = -0.5 * z.pow(2) - log_std - _HALF_LOG_2PI
    log_det = 2.0 * (_LOG2 - u - F.softplus(-2.0 * u))
    log_prob = (gauss - log_det).sum(-1)
    if scale != 1.0:
        log_prob = log_prob - u.shape[-1] * math.log(scale)
    return log_prob


class TanhGaussianHead(nn.Module):
    """SAC policy head ``a = β·tanh(u)``, ``u ~ N(μ(x), σ(x)²)``, reparameterized (§4(c), §11.8).

    ``log σ`` is clamped to ``[log_std_min, log_std_max]``. β < 1 gives EXPO's bounded edit policy;
    its log-prob includes the ``-Da·log β`` Jacobian term.

    Args:
        in_dim: ``Din``; action_dim: ``Da``; hidden: hidden widths; log_std_bounds: clamp range;
        scale: β; layer_norm: LayerNorm in the hidden layers.
    """

    def __init__(
        self,
        in_dim: int,
        action_dim: int,
        hidden: Sequence[int] = (256, 256),
        log_std_bounds: tuple[float, float] = (-20.0, 2.0),
        scale: float = 1.0,
        layer_norm: bool = False,
    ):
        super().__init__()
        if not scale > 0:
            raise ValueError(f"TanhGaussianHead: scale must be > 0, got {scale}")
        self.action_dim = action_dim
        self.log_std_min, self.log_std_max = log_std_bounds
        self.scale = float(scale)
        self.net = mlp(in_dim, hidden, 2 * action_dim, layer_norm=layer_norm)

    def distribution_params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, Din] -> (mean [B, Da], log_std [B, Da])`` of the pre-squash Gaussian."""
        mean, log_std = self.net(x).chunk(2, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def forward(
        self, x: torch.Tensor, deterministic: bool = False, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample an action.

        Args:
            x: ``[B, Din]``; deterministic: use ``u = μ`` (evaluation); generator: RNG for ε.

        Returns:
            ``(action [B, Da], log_prob [B], mean_action [B, Da])`` with ``mean_action = β·tanh(μ)``
            and ``log_prob`` the density at the returned action (reparameterized, differentiable).
        """
        mean, log_std = self.distribution_params(x)
        if deterministic:
            u = mean
        else:
            eps_device = generator.device if generator is not None else mean.device
            eps = torch.randn(mean.shape, generator=generator, device=eps_device).to(mean.device, mean.dtype)
            u = mean + log_std.exp() * eps
        log_prob = tanh_gaussian_log_prob(u, mean, log_std, self.scale)
        return self.scale * torch.tanh(u), log_prob, self.scale * torch.tanh(mean)


class LearnedTemperature(nn.Module):
    """SAC temperature ``α = exp(log α)`` driven toward the entropy target ``H̄`` (§4(c), §11.8).

    Args:
        init_alpha: initial α (WSRL/EXPO 1.0, HIL-SERL 1e-2).
        target_entropy: ``H̄`` (WSRL ``-Da``; EXPO edit policy and HIL-SERL ``-Da/2``).
    """

    def __init__(self, init_alpha: float = 1.0, target_entropy: float = -1.0):
        super().__init__()
        if not init_alpha > 0:
            raise ValueError(f"LearnedTemperature: init_alpha must be > 0, got {init_alpha}")
        self.target_entropy = float(target_entropy)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(init_alpha)))

    @property
    def alpha(self) -> torch.Tensor:
        """Detached scalar ``α`` for the actor and critic losses."""
        return self.log_alpha.detach().exp()

    def loss(self, log_prob: torch.Tensor) -> torch.Tensor:
        """:func:`robot_rl.core.losses.temperature_loss` with this module's ``log α`` and ``H̄``."""
        return temperature_loss(self.log_alpha, log_prob, self.target_entropy)
