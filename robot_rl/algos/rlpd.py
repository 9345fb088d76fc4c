"""``rlpd``: RLPD — "Efficient Online RL with Offline Data" (Ball, Smith, Kostrikov, Levine, 2023,
arXiv:2302.02948). SAC (``robot_rl/algos/sac.py``) with three changes: every batch is 50 % prior
(demo) data and 50 % online data, a LayerNorm critic ensemble of 10 heads with a REDQ target (min
over 2 random heads), and a higher update-to-data ratio. The baseline without a base policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from robot_rl.algos import ALGOS
from robot_rl.algos.sac import SAC, SACConfig


@dataclass(frozen=True)
class RLPDConfig(SACConfig):
    name: str = "rlpd"
    prior_fraction: float = 0.5  # symmetric sampling: half demos, half online
    num_critics: int = 10
    layer_norm: bool = True
    target_reduction: str = "min_subset:2"
    actor_reduction: str = "mean"
    utd: int = 4
    warmup_env_steps: int = 1000
    target_entropy_scale: float = 0.5


@ALGOS.register("rlpd", RLPDConfig)
class RLPD(SAC):
    """SAC with RLPD's defaults; all behaviour comes from the config."""
