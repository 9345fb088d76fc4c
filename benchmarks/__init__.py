"""robot_rl benchmarks (``robot-rl-bench <name> ...``): simulation speed and more."""
