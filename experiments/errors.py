from causal.errors import WorkbenchError


class ConfigError(WorkbenchError):
    """A bad config or run request; the message names the field and the allowed values."""
