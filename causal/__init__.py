"""High-level causal models, counterfactual datasets and built-in tasks (plain Python, no torch)."""

from causal.errors import CausalModelError, WorkbenchError
from causal.model import CausalModel
from causal.dataset import CounterfactualDataset, CounterfactualExample, can_distinguish
from causal.tasks import TASK_NAMES, Task, get_task

__all__ = [
    "CausalModel",
    "CausalModelError",
    "WorkbenchError",
    "CounterfactualDataset",
    "CounterfactualExample",
    "can_distinguish",
    "Task",
    "TASK_NAMES",
    "get_task",
]
