"""DBM, differentiable binary masking (the MIB causal-variable track's baseline): a learned
mask over the site's own dimensions, sparsity-regularised (its option `sparsity` x the mean mask)
and annealed to binary (temperature 1 -> 0.01); per variable. The kept dimensions save as
the variable's Subspace (standard basis rows), so the artifact reapplies as plain DII."""

from __future__ import annotations

from pydantic import Field

from experiments.search.methods import register
from experiments.search.methods.base import AlignmentMethod, MethodOptions
from interventions import MaskedBasisPatch

TEMPERATURE = (1.0, 0.01)


@register
class DBM(AlignmentMethod, per_variable=True):
    name = "dbm"
    summary = "DBM: a learned sparse binary mask over the site's dimensions"

    class Options(MethodOptions):
        sparsity: float | int = Field(0.05, ge=0, description="weight of the mean-mask sparsity penalty")

    def basis(self, cell):
        return None  # the site's own dimensions

    def fit(self, cell, variables):
        (var,) = variables
        module = MaskedBasisPatch(self.basis(cell), d=cell.d).to(cell.split.model.device)
        t0, t1 = TEMPERATURE
        sparsity = cell.options.sparsity
        return cell.train_variable(
            module, var, before_step=lambda s, n: module.set_temperature(t0 * (t1 / t0) ** (s / max(n - 1, 1))),
            penalty=lambda: sparsity * module.mask().mean())
