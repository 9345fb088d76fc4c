"""The small shared kernel: registry, serialization, checkpoints, logging, seeding, networks, replay, critics, actor heads, losses (imports only torch and numpy)."""
