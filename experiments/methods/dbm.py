"""DBM, differentiable binary masking (the MIB causal-variable track's baseline): a learned
mask over the site's own dimensions, sparsity-regularised (dbm_sparsity x the mean mask)
and annealed to binary (temperature 1 -> 0.01); per variable. The kept dimensions save as
the variable's Subspace (standard basis rows), so the artifact reapplies as plain DII."""

from __future__ import annotations

from experiments.methods import register
from experiments.methods.base import AlignmentMethod
from interventions import MaskedBasisPatch

TEMPERATURE = (1.0, 0.01)


@register
class DBM(AlignmentMethod):
    name = "dbm"
    summary = "DBM: a learned sparse binary mask over the site's dimensions"
    per_variable = True

    def basis(self, cell):
        return None  # the site's own dimensions

    def fit(self, cell, variables):
        (var,) = variables
        module = MaskedBasisPatch(self.basis(cell), d=cell.d).to(cell.split.model.device)
        t0, t1 = TEMPERATURE
        sparsity = cell.config.dbm_sparsity
        return cell.train_variable(
            module, var, before_step=lambda s, n: module.set_temperature(t0 * (t1 / t0) ** (s / max(n - 1, 1))),
            penalty=lambda: sparsity * module.mask().mean())
