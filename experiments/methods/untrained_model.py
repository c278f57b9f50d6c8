"""Control: the main method, run on a randomly initialised model of the same architecture
(no filtering of examples: the untrained model answers at chance)."""

from __future__ import annotations

from experiments.methods import get_method, register
from experiments.methods.base import AlignmentMethod


@register
class UntrainedModel(AlignmentMethod):
    name = "untrained_model"
    summary = "control: the main method on a randomly initialised copy of the model"
    role = "control"
    split = "untrained"

    def run(self, cell):
        return get_method(cell.config.method).run(cell.derived(keep_artifacts=False))
