"""Base policies (registry ``POLICIES``; name = module file = ``configs/policy/<name>.yaml``)."""

from robot_rl.core.registry import Registry

POLICIES: Registry[type] = Registry(
    "policy",
    known={
        name: f"robot_rl.policies.{name}"
        for name in ("bc_chunk", "diffusion", "rerank", "residual", "tanh_gaussian")
    },
)
