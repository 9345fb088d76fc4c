"""Reward models (registry ``REWARDS``; name = module file = ``configs/reward/<name>.yaml``).

Scoring back-ends share one interface (``robot_rl.rewards.interface``: ``RewardRequest`` ->
``RewardResult``, ``score`` / ``score_batch``); see docs/rewards.md.
"""

from robot_rl.core.registry import Registry

REWARDS: Registry[type] = Registry(
    "reward model",
    known={name: f"robot_rl.rewards.{name}" for name in ("classifier", "sim", "standin", "vlm")},
)
