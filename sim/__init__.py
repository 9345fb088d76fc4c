"""Built-in MuJoCo tasks (``robot_rl/Reach-v0``, ``Push-v0``, ``Lift-v0``, ``PegInsert-v0``).

Importing this package is light (nothing is imported eagerly); the task modules in
``robot_rl.sim.tasks`` load mujoco when an env is made. See docs/sim.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["expert_action"]


def __getattr__(name: str) -> Any:
    # lazy, so that ``python -m robot_rl.sim.expert`` does not import the module twice
    if name == "expert_action":
        from robot_rl.sim.expert import expert_action

        return expert_action
    raise AttributeError(f"module 'robot_rl.sim' has no attribute {name!r}")
