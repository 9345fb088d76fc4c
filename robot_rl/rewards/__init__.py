"""Reward models (registry ``REWARDS``; name = module file = ``configs/reward/<name>.yaml``)."""

from robot_rl.core.registry import Registry

REWARDS: Registry[type] = Registry("reward model", known={"sim": "robot_rl.rewards.sim"})
