"""The one error type that user-facing entry points turn into a one-line message."""


class ConfigError(ValueError):
    """Bad user input (config value, level name, checkpoint path, ...), raised before any work starts."""
