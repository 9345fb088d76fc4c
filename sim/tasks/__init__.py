"""The built-in manipulation tasks; each module defines one env class (entry points of robot_rl/*-v0)."""
