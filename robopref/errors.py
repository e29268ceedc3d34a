"""User-facing errors: each carries one line naming the problem and the fix.

The CLI prints ``str(error)`` alone (no traceback) for these; anything else is a bug.
"""


class RobopError(Exception):
    """Base class for errors caused by bad input rather than by a bug in robopref."""


class ConfigError(RobopError, ValueError):
    """A configuration value is invalid."""


class DatasetError(RobopError):
    """A dataset folder is missing, corrupt or of an unsupported format version."""


class CheckpointError(RobopError):
    """A checkpoint is missing, corrupt, or was saved from a model of another shape."""


class NonFiniteError(RobopError, ValueError):
    """NaN or inf met where only finite numbers are valid (observations, actions)."""
