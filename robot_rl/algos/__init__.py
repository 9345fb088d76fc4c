"""Training algorithms (registry ``ALGOS``; name = module file = ``configs/algo/<name>.yaml``)."""

from robot_rl.core.registry import Registry

ALGOS: Registry[type] = Registry(
    "algorithm",
    known={
        name: f"robot_rl.algos.{name}" for name in ("bc", "expo", "pa_rl", "residual", "rlpd", "sac", "wsrl")
    },
)
