"""One place that imports optional heavy packages and names the extra that provides them."""

from __future__ import annotations

import importlib
from types import ModuleType

# module import name -> extra of robot-rl that installs it
EXTRA_FOR_MODULE = {
    "mujoco": "sim",
    "robosuite": "sim",
    "rclpy": "ros",
    "std_msgs": "ros",
    "sensor_msgs": "ros",
    "geometry_msgs": "ros",
    "std_srvs": "ros",
    "trajectory_msgs": "ros",
    "mcap": "bag",
    "mcap_ros2": "bag",
    "rosbags": "bag",
    "transformers": "vlm",
    "torchvision": "vlm",
    "gymnasium_robotics": "bench",
    "hypothesis": "dev",
    "pynput": "teleop",
    "pygame": "teleop",
    "pyspacemouse": "teleop",
}


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` or raise ``ImportError: install robot-rl[<extra>] to use <feature>``.

    Args:
        module: import name, e.g. ``"rclpy"``.
        feature: what the caller needs it for, e.g. ``"the ROS 2 policy node"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        extra = EXTRA_FOR_MODULE.get(module.split(".")[0], "all")
        raise ImportError(
            f"install robot-rl[{extra}] to use {feature} (could not import {module}: {err})"
        ) from err
