"""The one learning-rate schedule, used by the search's cells, finetunes, comparisons and the zoo.

`lr_factor(schedule, step, steps, warmup_steps, floor)` is the multiplier of the base rate at
optimizer step `step` (0-based) of `steps`:

    warm(step)  = min(1, (step + 1) / warmup_steps)      (1 without a warm-up)
    decay(frac) = 1 | 1 - frac | (1 + cos(pi frac)) / 2   for constant | linear | cosine
    factor      = warm(step) * (floor + (1 - floor) * decay(min(step / steps, 1)))

With no warm-up and floor 0, "linear" and "cosine" equal transformers' schedules of the same
names; the zoo's recipe is cosine with a 100-step warm-up and floor 0.1.
"""

from __future__ import annotations

import math

import torch

LR_SCHEDULES = ("constant", "linear", "cosine")


def lr_factor(schedule: str, step: int, steps: int, warmup_steps: int = 0, floor: float = 0.0) -> float:
    steps = max(steps, 1)
    if schedule == "linear":
        decay = 1.0 - min(step / steps, 1.0)
    elif schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))
    elif schedule == "constant":
        decay = 1.0
    else:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; allowed values: {list(LR_SCHEDULES)}")
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    return warm * (floor + (1.0 - floor) * decay)


def lr_scheduler(optimizer: torch.optim.Optimizer, schedule: str, steps: int, warmup_steps: int = 0,
                 floor: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """The optimizer's scheduler for `lr_factor` (call .step() after each optimizer step)."""
    lr_factor(schedule, 0, steps)  # an unknown name fails here, not at the first step
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(schedule, s, steps, warmup_steps, floor))
