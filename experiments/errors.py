import re

from causal.errors import WorkbenchError

_FIELD = re.compile(r"\bfield '([A-Za-z_][A-Za-z0-9_]*)'")


class ConfigError(WorkbenchError):
    """A bad config or run request; the message names the field and the allowed values."""

    @property
    def field(self) -> str | None:
        """The config field the message names ("... field 'k': ..."), so a form can show the
        message under that field; None when it names none."""
        m = _FIELD.search(str(self))
        return m.group(1) if m else None
