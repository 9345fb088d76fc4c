"""Demonstrations and datasets: in-memory episodes and chunk windows, the episode store, and
LeRobot v3 / robomimic interop."""
