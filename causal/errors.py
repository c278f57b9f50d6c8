"""The one exception family users see: every error a user can cause is a WorkbenchError
whose message says what to fix. Subclasses say which layer raised it."""


class WorkbenchError(ValueError):
    """An error the user can fix (bad config, wrong site, mismatched artifact, ...)."""


class CausalModelError(WorkbenchError):
    """A causal model or counterfactual dataset is malformed; the message names the variable."""


def is_count(value, minimum: int = 0) -> bool:
    """An integer >= minimum, and never a bool: True is an int to Python, not a count or a seed."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def require_count(value, what: str, minimum: int = 0, error: type[WorkbenchError] = WorkbenchError) -> int:
    """`value` if it is a count (an int >= minimum, not a bool), else one error of type `error`."""
    if not is_count(value, minimum):
        raise error(f"{what} must be an integer >= {minimum}, got {value!r}"
                    + (" (a bool is not a number here)" if isinstance(value, bool) else ""))
    return value
