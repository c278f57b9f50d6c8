"""Built-in tasks: `get_task(name)` builds one; `TASK_NAMES` lists them."""

from __future__ import annotations

from typing import Callable

from causal.errors import CausalModelError
from causal.tasks.arithmetic_carry import arithmetic_carry
from causal.tasks.hierarchical_equality import hierarchical_equality
from causal.tasks.hierarchical_equality_tokens import hierarchical_equality_tokens
from causal.tasks.mcqa import mcqa
from causal.tasks.price_tagging import price_tagging
from causal.tasks.task import Segment, Task

_BUILDERS: dict[str, Callable[..., Task]] = {
    "hierarchical_equality": hierarchical_equality,
    "hierarchical_equality_tokens": hierarchical_equality_tokens,
    "price_tagging": price_tagging,
    "arithmetic_carry": arithmetic_carry,
    "mcqa": mcqa,
}
TASK_NAMES: list[str] = list(_BUILDERS)


def get_task(name: str, **options) -> Task:
    """A fresh Task by name; options (e.g. n_objects=) go to the task's builder."""
    if name not in _BUILDERS:
        raise CausalModelError(f"unknown task {name!r}; choose one of {TASK_NAMES}")
    try:
        return _BUILDERS[name](**options)
    except TypeError as exc:
        raise CausalModelError(f"task {name!r} does not take options {sorted(options)}: {exc}") from exc


__all__ = ["Task", "Segment", "TASK_NAMES", "get_task"]
