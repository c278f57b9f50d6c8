"""PCA (the MIB causal-variable track's baseline): the top-k principal directions of the
site's activations on the training bases, with no training; DII on them, per variable."""

from __future__ import annotations

import torch

from experiments.search.methods import register
from experiments.search.methods.base import AlignmentMethod
from interventions import RotatedSubspace, complete_orthonormal_rows


def pca_basis(cell, n: int) -> torch.Tensor:
    """[n, d] orthonormal rows: principal directions of the centred activations at the site
    over the distinct training bases, completed at random where there are fewer samples than n."""
    split = cell.split
    acts = split.site_acts(cell.site)[split.train_base_inputs()].double()
    acts = acts - acts.mean(dim=0, keepdim=True)
    _, s, vh = torch.linalg.svd(acts, full_matrices=False)
    rank = int((s > s.max() * 1e-6).sum()) if s.numel() else 0
    rows = vh[:min(rank, n)].float()
    if rows.shape[0] < n:
        rows = complete_orthonormal_rows(rows.cpu(), n, generator=cell.generator).to(vh.device)
    return rows.to(split.model.device)


@register
class PCA(AlignmentMethod, trains=False, per_variable=True, uses_k=True):
    name = "pca"
    summary = "PCA: DII on the top-k principal directions of the training activations (no training)"

    def fit(self, cell, variables):
        module = RotatedSubspace.from_rotation(pca_basis(cell, cell.k_for(variables)))
        module.eval()
        return module.to(cell.split.model.device)

    def k_of(self, cell, module) -> int:
        return module.k

    def artifact(self, cell, module, variables, iia):
        return cell.subspace(module.rotation, variables, iia)
