"""Pure message <-> numpy conversions of the robot_rl nodes (message classes are passed in or duck-typed).

Units: normalized actions in [-1, 1]; ``physical = offset + scale * action`` for forward commands and
joint trajectories; twists carry the tcp velocity in m/s (frame ``frame_id``) = ``a[:3] * ee_scale *
control_hz``, since one normalized unit moves the tcp ``ee_scale`` metres per control period.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robot_rl.data.rosbag import image_from_msg


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


def image_to_msg(image: np.ndarray, msg: Any) -> Any:
    """Fill a sensor_msgs/Image ``msg`` (header left to the caller) with an RGB uint8 image (H, W, 3)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
    msg.height, msg.width = int(image.shape[0]), int(image.shape[1])
    msg.encoding, msg.is_bigendian, msg.step = "rgb8", 0, int(image.shape[1]) * 3
    msg.data = image.tobytes()
    return msg


# sensor_msgs/Image -> RGB array: one implementation, ROS-free, shared with the bag reader
msg_to_image = image_from_msg


OBS_STAMP_PREFIX = "obs_stamp:"


def obs_stamp_label(stamp_s: float) -> str:
    """The layout label an action carries: the header stamp (s) of the observation it answers."""
    return f"{OBS_STAMP_PREFIX}{stamp_s:.9f}"


def obs_stamp_of(labels: list[str]) -> float | None:
    """The observation stamp in a message's ``layout.dim`` labels, if one is there."""
    for label in labels:
        if label.startswith(OBS_STAMP_PREFIX):
            try:
                return float(label[len(OBS_STAMP_PREFIX) :])
            except ValueError:
                return None
    return None
