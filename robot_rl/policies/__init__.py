"""Base policies (registry ``POLICIES``; name = module file = ``configs/policy/<name>.yaml``)."""

from robot_rl.core.registry import Registry

POLICIES: Registry[type] = Registry("policy", known={"bc_chunk": "robot_rl.policies.bc_chunk", "diffusion": "robot_rl.policies.diffusion"})
