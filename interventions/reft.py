"""ReFT interventions (Wu et al. 2024): edit hidden states inside a low-rank subspace.

LoReFT: ``phi(h) = h + R^T (W h + b - R h)``, R (r x d) orthonormal rows, W (r x d), b (r).
DiReFT: ``phi(h) = h + W2^T (W1 h + b)``, no orthogonality.
Both take [..., d] of any leading shape, compute in fp32 and return the input dtype.
"""

from __future__ import annotations

import torch
from torch import nn

from causal.errors import is_count
from interventions.errors import InterventionError
from interventions.subspace import (
    DEFAULT_PARAMETRIZATION,
    OrthonormalRows,
    complete_orthonormal_rows,
    random_orthonormal_rows,
)


class LoReFT(nn.Module):
    """Trainable parameters: R (d*r numbers via its parametrization) + W (d*r) + b (r).

    Dropout (training only) acts on the edit ``R^T(W h + b - R h)``, not on the hidden
    state itself: dropping the whole residual stream would corrupt the frozen model.
    """

    def __init__(self, d: int, r: int, dropout: float = 0.0, parametrization: str = DEFAULT_PARAMETRIZATION,
                 identity_init: bool = False, generator: torch.Generator | None = None):
        super().__init__()
        if not (is_count(d, 1) and is_count(r, 1)) or not r <= d:
            raise InterventionError(f"LoReFT rank must satisfy 1 <= r <= d (integers), got r={r!r}, d={d!r}")
        self.d, self.r, self.parametrization = d, r, parametrization
        self.rows = OrthonormalRows(d, r, parametrization, generator)
        self.learned_source = nn.Linear(d, r)  # W and b
        self.dropout = nn.Dropout(dropout)
        if identity_init:
            self.reset_to_identity()

    @classmethod
    def from_rotation(cls, rotation: torch.Tensor, r: int | None = None, dropout: float = 0.0,
                      parametrization: str = DEFAULT_PARAMETRIZATION, identity_init: bool = False,
                      generator: torch.Generator | None = None) -> "LoReFT":
        """Start R from given directions [k, d]: r > k completes them with orthogonal
        directions, r <= k keeps the first r. r defaults to k."""
        if rotation.dim() != 2:
            raise InterventionError(f"rotation must be [k, d], got shape {tuple(rotation.shape)}")
        k, d = rotation.shape
        r = k if r is None else r
        module = cls(d, r, dropout=dropout, parametrization=parametrization, generator=generator)
        module.rows.set_rows(complete_orthonormal_rows(rotation.detach().float().cpu(), r, generator))
        if identity_init:
            module.reset_to_identity()
        return module

    @property
    def rotation(self) -> torch.Tensor:
        """[r, d], orthonormal rows, fp32."""
        return self.rows()

    @torch.no_grad()
    def reset_to_identity(self) -> None:
        """W = R, b = 0: phi(h) = h until training moves W or b."""
        self.learned_source.weight.copy_(self.rotation)
        self.learned_source.bias.zero_()

    def freeze_rotation(self) -> None:
        """Train only W and b; R stays the given subspace."""
        for p in self.rows.parameters():
            p.requires_grad_(False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        hf = _compute_dtype(h)
        r = self.rotation.to(hf.dtype)
        w, b = self.learned_source.weight.to(hf.dtype), self.learned_source.bias.to(hf.dtype)
        edit = (nn.functional.linear(hf, w, b) - hf @ r.T) @ r
        return (hf + self.dropout(edit)).to(h.dtype)

    def extra_repr(self) -> str:
        return f"d={self.d}, r={self.r}, parametrization={self.parametrization!r}"


def _compute_dtype(h: torch.Tensor) -> torch.Tensor:
    """fp32 for half-precision models (the edit is small against h); a float64 model keeps
    float64, so checks against other code can run exactly."""
    return h if h.dtype == torch.float64 else h.float()


class DiReFT(nn.Module):
    """``h + W2^T (W1 h + b)``; W2 starts with orthonormal rows (as in pyreft) but is free."""

    def __init__(self, d: int, r: int, dropout: float = 0.0, generator: torch.Generator | None = None):
        super().__init__()
        if not (is_count(d, 1) and is_count(r, 1)) or not r <= d:
            raise InterventionError(f"DiReFT rank must satisfy 1 <= r <= d (integers), got r={r!r}, d={d!r}")
        self.d, self.r = d, r
        self.learned_source = nn.Linear(d, r)  # W1 and b
        self.write = nn.Parameter(random_orthonormal_rows(r, d, generator))  # W2 [r, d]
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        hf = _compute_dtype(h)
        w, b = self.learned_source.weight.to(hf.dtype), self.learned_source.bias.to(hf.dtype)
        return (hf + self.dropout(nn.functional.linear(hf, w, b) @ self.write.to(hf.dtype))).to(h.dtype)

    def extra_repr(self) -> str:
        return f"d={self.d}, r={self.r}"
