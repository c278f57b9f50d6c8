"""Control: the main method trained and tested on a split disjoint in input values (the
test set uses only held-out values of `disjoint_on`), against spurious alignments that
memorise values rather than carry the variable."""

from __future__ import annotations

from experiments.search.methods import register
from experiments.search.methods.base import MainMethodElsewhere


@register
class DisjointSplit(MainMethodElsewhere, split="disjoint"):
    name = "disjoint_split"
    summary = "control: the main method on a train/test split disjoint in input values"
