"""The small shared kernel (imports only torch and numpy): registry, serialization, checkpoints,
logging, seeding, networks, replay, critic ensembles, actor heads and losses."""
