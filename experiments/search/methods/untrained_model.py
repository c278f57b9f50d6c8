"""Control: the main method, run on a randomly initialised model of the same architecture
(no filtering of examples: the untrained model answers at chance)."""

from __future__ import annotations

from experiments.search.methods import register
from experiments.search.methods.base import MainMethodElsewhere


@register
class UntrainedModel(MainMethodElsewhere, split="untrained"):
    name = "untrained_model"
    summary = "control: the main method on a randomly initialised copy of the model"
