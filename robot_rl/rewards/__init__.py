"""Reward models (registry ``REWARDS``; name = module file = ``configs/reward/<name>.yaml``).

Scoring back-ends share one interface (``robot_rl.rewards.interface``: ``RewardRequest`` ->
``RewardResult``, ``score`` / ``score_batch``); see docs/rewards.md.
"""

from robot_rl.core.registry import Registry

REWARDS: Registry[type] = Registry(
    "reward model",
    known={"sim": "robot_rl.rewards.sim", "vlm": "robot_rl.rewards.vlm"},
)
