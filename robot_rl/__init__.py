"""robot_rl: refine imitation-learned robot policies with reinforcement learning.

``import robot_rl`` is light: it registers the gymnasium ids (string entry points) and nothing
else; MuJoCo, robosuite, rclpy and transformers are imported only by the code that needs them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from robot_rl.envs import register_envs

register_envs()


def load_policy(path: Any, device: Any = "cpu") -> Any:
    """Load a policy bundle folder (see :mod:`robot_rl.deploy.bundle`)."""
    from robot_rl.deploy.bundle import load_policy as _load

    return _load(path, device=device)


__all__ = ["__version__", "load_policy", "register_envs"]
