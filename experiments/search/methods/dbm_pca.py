"""DBM over a PCA basis: the same learned sparse binary mask, over the principal directions
of the training activations instead of the site's own dimensions."""

from __future__ import annotations

from experiments.search.methods import register
from experiments.search.methods.dbm import DBM
from experiments.search.methods.pca import pca_basis


@register
class DBMPCA(DBM):
    name = "dbm_pca"
    summary = "DBM over a PCA basis: a learned sparse binary mask over principal directions"

    def basis(self, cell):
        return pca_basis(cell, cell.d)
