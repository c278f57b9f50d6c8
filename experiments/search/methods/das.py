"""DAS (Geiger et al.): a learned rotation, k rows per variable as disjoint slices of it,
trained jointly on examples that intervene on [V1], [V2], [V1, V2], ...:
DII(h_b, h_s) = h_b + R^T (R h_s - R h_b)."""

from __future__ import annotations

from experiments.search.methods import register
from experiments.search.methods.base import AlignmentMethod


@register
class DAS(AlignmentMethod, uses_k=True, together=True):
    name = "das"
    summary = "Distributed Alignment Search: a learned k-dim rotated subspace per variable"

    def start(self, cell, variables):
        return cell.new_rotation()

    def fit(self, cell, variables):
        module = self.start(cell, variables)
        curve = cell.train(module, cell.train_rows, cell.steps())
        return None if curve is None else (module, curve)

    def k_of(self, cell, module) -> None:
        return None  # each variable set's own k (its slices of the rotation)

    def artifact(self, cell, module, variables, iia):
        """One artifact per variable (its slice of rows, what LoReFT starts from) and, for
        several variables, the joint rotation with its slices."""
        rotation = module.rotation.detach()
        iia = iia if isinstance(iia, dict) else {variables[0]: iia}
        extra = {"k_per_variable": dict(cell.search.ks)}
        out = {(cell.site.key, v): cell.subspace(rotation[a:b], [v], iia.get(v), **extra)
               for v, (a, b) in module.slices.items()}
        if len(module.slices) > 1:
            out[(cell.site.key, "+".join(module.slices))] = cell.subspace(
                rotation, list(module.slices), iia, slices=dict(module.slices), **extra)
        return out
