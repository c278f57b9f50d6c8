"""The one exception family users see: every error a user can cause is a WorkbenchError
whose message says what to fix. Subclasses say which layer raised it."""


class WorkbenchError(ValueError):
    """An error the user can fix (bad config, wrong site, mismatched artifact, ...)."""


class CausalModelError(WorkbenchError):
    """A causal model or counterfactual dataset is malformed; the message names the variable."""
