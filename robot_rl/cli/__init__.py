"""Command-line entry points (the only place hydra is imported)."""
