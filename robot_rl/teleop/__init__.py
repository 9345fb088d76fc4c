"""Teleoperation devices (registry ``TELEOP``; ROS-free; name = module file = ``configs/teleop/<name>.yaml``).

Every device turns its input into the same :class:`robot_rl.teleop.base.TeleopCommand`: a normalized
end-effector delta + gripper action, a takeover flag and events (success, failure, rerecord, end).
See docs/hil.md.
"""

from robot_rl.core.registry import Registry

TELEOP: Registry[type] = Registry(
    "teleop device",
    known={name: f"robot_rl.teleop.{name}" for name in ("gamepad", "keyboard", "simulated", "spacemouse")},
)
