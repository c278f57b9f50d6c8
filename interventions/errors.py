from causal.errors import WorkbenchError


class InterventionError(WorkbenchError):
    """Wrong site, mismatched artifact, unloadable model, corrupt file: the message names the fix."""
