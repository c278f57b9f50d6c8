"""Control: the same k per variable as DAS, a random rotation (exactly the one DAS starts
from at that site), no training. What a subspace of that size gives by chance."""

from __future__ import annotations

from experiments.search.methods import register
from experiments.search.methods.base import AlignmentMethod


@register
class RandomRotation(AlignmentMethod, role="control", trains=False, uses_k=True, default_control=True):
    name = "random_rotation"
    summary = "control: DAS's starting rotation, untrained (what k dimensions give by chance)"

    def fit(self, cell, variables):
        module = cell.new_rotation()
        module.eval()
        return module

    def k_of(self, cell, module) -> None:
        return None  # each variable set's own k, as DAS
