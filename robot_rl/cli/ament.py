"""Make this pip-installed package visible to ``ros2 launch`` on a ROS 2 machine.

``ros2 launch robot_rl <file>.launch.yaml`` resolves ``pkg: robot_rl`` through the ament index: the
package's prefix is the entry of ``AMENT_PREFIX_PATH`` holding
``share/ament_index/resource_index/packages/robot_rl``; a node's ``exec`` is
``<prefix>/lib/robot_rl/<exec>`` and launch files are found under ``<prefix>/share/robot_rl``. This
is the layout colcon gives an ``ament_python`` package; :func:`write_ament_prefix` writes it for a
pip install (symlinks to the node console scripts, the launch files, a ``package.xml``), so no
colcon workspace is needed.
"""

from __future__ import annotations

import os
import shutil
import sys
from importlib.metadata import entry_points
from pathlib import Path

PACKAGE = "robot_rl"

PACKAGE_XML = """<?xml version="1.0"?>
<package format="3">
  <name>robot_rl</name>
  <version>{version}</version>
  <description>robot_rl ROS 2 nodes (installed with pip; see docs/ros.md)</description>
  <maintainer email="maintainers@robot-rl.invalid">robot_rl maintainers</maintainer>
  <license>Apache-2.0</license>
  <exec_depend>rclpy</exec_depend>
  <exec_depend>std_msgs</exec_depend>
  <exec_depend>sensor_msgs</exec_depend>
  <exec_depend>geometry_msgs</exec_depend>
  <exec_depend>std_srvs</exec_depend>
  <exec_depend>trajectory_msgs</exec_depend>
  <export>
    <build_type>ament_python</build_type>
  </export>
</package>
"""


def node_scripts() -> dict[str, Path]:
    """Console-script name -> its file, for every ROS node of this package (``robot_rl.real.*``)."""
    out = {}
    for ep in entry_points(group="console_scripts"):
        if ep.value.startswith("robot_rl.real."):
            path = Path(sys.executable).parent / ep.name
            found = path if path.exists() else shutil.which(ep.name)
            if found:
                out[ep.name] = Path(found)
    return out


def launch_dir() -> Path | None:
    """The repository's ``launch/`` folder (launch files are not part of the wheel)."""
    candidate = Path(__file__).resolve().parents[2] / "launch"
    return candidate if candidate.is_dir() else None


def write_ament_prefix(prefix: str | Path) -> Path:
    """Write (or refresh) the ament layout for ``robot_rl`` under ``prefix``; returns the prefix."""
    from robot_rl import __version__

    prefix = Path(prefix).resolve()
    marker = prefix / "share/ament_index/resource_index/packages" / PACKAGE
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("")
    share = prefix / "share" / PACKAGE
    share.mkdir(parents=True, exist_ok=True)
    (share / "package.xml").write_text(PACKAGE_XML.format(version=__version__))
    lib = prefix / "lib" / PACKAGE
    lib.mkdir(parents=True, exist_ok=True)
    scripts = node_scripts()
    if not scripts:
        raise FileNotFoundError("no robot_rl node scripts are installed (pip install 'robot-rl[ros]')")
    for name, path in scripts.items():
        link = lib / name
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(path, link)
    source = launch_dir()
    if source is not None:
        target = share / "launch"
        target.mkdir(exist_ok=True)
        for f in source.glob("*.launch.yaml"):
            shutil.copy2(f, target / f.name)
    return prefix
