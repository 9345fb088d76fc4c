"""robot_rl."""
