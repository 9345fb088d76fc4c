"""Pure message <-> numpy conversions of the robot_rl nodes (message classes are passed in or duck-typed).

Units: normalized actions in [-1, 1]; ``physical = offset + scale * action`` for forward commands and
joint trajectories; twists carry the tcp velocity in m/s (frame ``frame_id``) = ``a[:3] * ee_scale *
control_hz``, since one normalized unit moves the tcp ``ee_scale`` metres per control period.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def scale_command(action: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Normalized action (Da,) -> physical command (Da,)."""
    return offset + scale * np.asarray(action, dtype=np.float64)


def unscale_command(command: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Physical command (Da,) -> normalized action (Da,); the inverse of :func:`scale_command`."""
    return (np.asarray(command, dtype=np.float64) - offset) / scale


def action_to_twist(action: np.ndarray, ee_scale: np.ndarray | float, control_hz: float) -> Any:
    """TwistStamped with ``linear = a[:3] * ee_scale * control_hz`` (m/s); header left to the caller."""
    from geometry_msgs.msg import TwistStamped

    scale = np.broadcast_to(np.asarray(ee_scale, dtype=np.float64), np.shape(action))[:3]
    v = np.asarray(action[:3], dtype=np.float64) * scale * control_hz
    msg = TwistStamped()
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(x) for x in v)
    return msg


def twist_to_delta(msg: Any, ee_scale: float, control_hz: float) -> np.ndarray:
    """The position-delta part (3,) of a normalized action from a TwistStamped (inverse of the above)."""
    lin = msg.twist.linear
    return np.array([lin.x, lin.y, lin.z]) / (ee_scale * control_hz)


def joint_state_vector(names: list[str], positions: list[float], wanted: list[str]) -> np.ndarray:
    """Positions of ``wanted`` joints in that order; raises KeyError naming the first missing joint."""
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in wanted if n not in index]
    if missing:
        raise KeyError(f"joints {missing} are not in /joint_states (it has {list(names)})")
    return np.array([positions[index[n]] for n in wanted], dtype=np.float64)
