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
        steps = cell.steps()
        vi = cell.variables.index(var)
        curve = cell.train(module, cell.split.rows_for_set(cell.split.train_rows, [var]), steps, variable=var,
                           before_step=lambda s, n: module.set_temperature(module.temperature_at(s, n)),
                           step_offset=vi * steps, total_steps=steps * len(cell.variables))
        return None if curve is None else (module, curve)

    def k_of(self, cell, module) -> int:
        return module.intervention_size

    def artifact(self, cell, module, variables, iia):
        if module.intervention_size == 0:
            return None
        return cell.subspace(module.hard_rotation(), variables, iia)
