"""Demonstrations and datasets: in-memory episodes and chunk windows, the episode store, LeRobot v3 and robomimic interop."""
