"""Boundless DAS (Wu et al. 2023): a full rotation and a learned boundary per variable, the
mask over rotated dims annealed from a soft to a sharp boundary; each variable trains on
its own examples. The kept rotation rows save as the variable's Subspace."""

from __future__ import annotations

from experiments.methods import register
from experiments.methods.base import AlignmentMethod
from interventions import BoundlessSubspace


@register
class Boundless(AlignmentMethod):
    name = "boundless"
    summary = "Boundless DAS: a learned rotation and a learned subspace size per variable"
    per_variable = True

    def fit(self, cell, variables):
        c = cell.config
        (var,) = variables
        t_start, t_end = c.temperature
        module = BoundlessSubspace(cell.d, temperature_start=t_start, temperature_end=t_end,
                                   parametrization=c.parametrization, generator=cell.generator).to(cell.split.model.device)
        return cell.train_variable(module, var,
                                   before_step=lambda s, n: module.set_temperature(module.temperature_at(s, n)))
