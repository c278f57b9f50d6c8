"""Control: the main method trained and tested on a split disjoint in input values (the
test set uses only held-out values of `disjoint_on`), against spurious alignments that
memorise values rather than carry the variable."""

from __future__ import annotations

from experiments.methods import get_method, register
from experiments.methods.base import AlignmentMethod


@register
class DisjointSplit(AlignmentMethod):
    name = "disjoint_split"
    summary = "control: the main method on a train/test split disjoint in input values"
    role = "control"
    split = "disjoint"

    def run(self, cell):
        return get_method(cell.config.method).run(cell.derived(keep_artifacts=False))
