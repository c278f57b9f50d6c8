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
        steps = cell.steps()
        t0, t1 = TEMPERATURE
        vi = cell.variables.index(var)
        sparsity = cell.config.dbm_sparsity
        curve = cell.train(module, cell.split.rows_for_set(cell.split.train_rows, [var]), steps, variable=var,
                           before_step=lambda s, n: module.set_temperature(t0 * (t1 / t0) ** (s / max(n - 1, 1))),
                           penalty=lambda: sparsity * module.mask().mean(),
                           step_offset=vi * steps, total_steps=steps * len(cell.variables))
        return None if curve is None else (module, curve)

    def k_of(self, cell, module) -> int:
        return module.k

    def artifact(self, cell, module, variables, iia):
        if module.k == 0:
            return None
        return cell.subspace(module.selected_rows(), variables, iia, basis=self.name)
