"""Teleoperation devices (registry ``TELEOP``; ROS-free; name = module file)."""

from robot_rl.core.registry import Registry

TELEOP: Registry[type] = Registry("teleop device", known={})
