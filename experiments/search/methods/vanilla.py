"""Control: the whole activation vector patched from the source (per variable: a joint set
has no single source to patch from)."""

from __future__ import annotations

from experiments.search.methods import register
from experiments.search.methods.base import AlignmentMethod
from interventions import VanillaPatch


@register
class Vanilla(AlignmentMethod, role="control", trains=False, per_variable=True, default_control=True):
    name = "vanilla"
    summary = "control: patch the whole activation vector from the variable's source (full vector)"

    def fit(self, cell, variables):
        return VanillaPatch()

    def k_of(self, cell, module) -> int:
        return cell.d
