"""Boundless DAS (Wu et al. 2023): a full rotation and a learned boundary per variable, the
mask over rotated dims annealed from a soft to a sharp boundary; each variable trains on
its own examples. The kept rotation rows save as the variable's Subspace."""

from __future__ import annotations

from pydantic import Field, field_validator

from experiments.search.methods import register
from experiments.search.methods.base import AlignmentMethod, MethodOptions
from interventions import BoundlessSubspace


@register
class Boundless(AlignmentMethod, per_variable=True):
    name = "boundless"
    summary = "Boundless DAS: a learned rotation and a learned subspace size per variable"

    class Options(MethodOptions):
        temperature: list[float | int] = Field(default_factory=lambda: [50.0, 0.1],
                                               description="mask temperature [start, end], annealed geometrically")

        @field_validator("temperature")
        @classmethod
        def _two_positive(cls, v):
            if len(v) != 2 or not all(t > 0 for t in v):
                raise ValueError("give [start, end], both positive")
            return v

    def fit(self, cell, variables):
        c = cell.config
        (var,) = variables
        t_start, t_end = cell.options.temperature
        module = BoundlessSubspace(cell.d, temperature_start=t_start, temperature_end=t_end,
                                   parametrization=c.parametrization, generator=cell.generator).to(cell.split.model.device)
        return cell.train_variable(module, var,
                                   before_step=lambda s, n: module.set_temperature(module.temperature_at(s, n)))
