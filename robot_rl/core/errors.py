"""User-facing error types: the CLI prints them as one line and exits non-zero (no traceback)."""


class ConfigError(ValueError):
    """An invalid configuration value or combination (message names the field and the rule)."""


class BundleError(ValueError):
    """A policy bundle that cannot be loaded (message names the file and the mismatch)."""


class DataError(ValueError):
    """Unusable input data (message names the file and the field)."""


class TrainingDivergedError(RuntimeError):
    """A non-finite loss: training stops with the step and the batch statistics."""
