"""Distributed interchange interventions (DII) on linear subspaces.

DII at one site, R (k x d) with orthonormal rows: ``h_b + R^T (R h_s - R h_b)``.
Boundless DAS: full R with a learned soft mask m: ``R^T((1 - m) * R h_b + m * R h_s)``.
Rotations are always computed in fp32; activations may be bf16/fp16 and come back in
their own dtype.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import orthogonal

from causal.errors import is_count
from interventions.errors import InterventionError

PARAMETRIZATIONS = ("qr", "householder", "cayley", "matrix_exp")
# Measured on 2 CPU cores, d=768, k=16, one Adam step of a toy loss: qr 33 ms,
# cayley 353 ms, householder 517 ms, matrix_exp 2472 ms (DESIGN.md has the GPU
# figures, same order). The torch maps build a d x d matrix; QR works on d x k.
DEFAULT_PARAMETRIZATION = "qr"


def _qr_rows(a: torch.Tensor) -> torch.Tensor:
    """Orthonormal rows [k, d] from an unconstrained [d, k] matrix (QR retraction).

    The sign fix makes the map unique (diag of the triangular factor positive), so
    given orthonormal columns come back unchanged and training does not flip signs.
    """
    q, r = torch.linalg.qr(a, mode="reduced")
    signs = torch.sign(torch.diagonal(r))
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    return (q * signs).mT


def random_orthonormal_rows(k: int, d: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """k orthonormal rows in R^d, uniformly distributed (QR of a Gaussian matrix)."""
    return _qr_rows(torch.randn(d, k, generator=generator, dtype=torch.float32))


def complete_orthonormal_rows(rows: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep the given orthonormal rows [k, d] and add n - k orthogonal ones (n <= d)."""
    k, d = rows.shape
    if n <= k:
        return rows[:n].clone()
    extra = torch.randn(n - k, d, generator=generator, dtype=torch.float64)
    basis = rows.double()
    for _ in range(2):  # twice: one Gram-Schmidt pass loses orthogonality in fp arithmetic
        extra = extra - (extra @ basis.T) @ basis
    extra = _qr_rows(extra.T)
    return torch.cat([rows.float(), extra.float()], dim=0)


def _check_parametrization(parametrization: str) -> None:
    if parametrization not in PARAMETRIZATIONS:
        raise InterventionError(
            f"unknown parametrization {parametrization!r}: use one of {', '.join(PARAMETRIZATIONS)}"
        )


class OrthonormalRows(nn.Module):
    """A learnable [k, d] matrix with orthonormal rows, stored as exactly d*k numbers.

    "qr": a QR retraction of an unconstrained d x k matrix (cheapest).
    "householder" / "cayley" / "matrix_exp": torch.nn.utils.parametrizations.orthogonal.
    """

    def __init__(self, d: int, k: int, parametrization: str = DEFAULT_PARAMETRIZATION,
                 generator: torch.Generator | None = None):
        super().__init__()
        _check_parametrization(parametrization)
        if not (is_count(d, 1) and is_count(k, 1)) or not k <= d:
            raise InterventionError(f"need 1 <= k <= d for orthonormal rows, got k={k}, d={d}")
        self.d, self.k, self.parametrization = d, k, parametrization
        init = random_orthonormal_rows(k, d, generator)
        if parametrization == "qr":
            self.weight_dk = nn.Parameter(init.T.contiguous())
        else:
            self.linear = nn.Linear(d, k, bias=False)
            orthogonal(self.linear, "weight", orthogonal_map=parametrization)
            with torch.no_grad():
                self.linear.weight = init

    # Rows given with set_rows(exact=True) are returned as given, not re-orthonormalised, until
    # the module trains: an imported pyreft R (float32, orthonormal only to ~1e-7) then computes
    # exactly what pyreft computes with it. Not saved: a reloaded artifact is orthonormalised.
    exact_rows: torch.Tensor | None = None

    def forward(self) -> torch.Tensor:
        if self.exact_rows is not None:
            if not (self.training and torch.is_grad_enabled()):
                return self.exact_rows.to(device=self._device(), dtype=self._dtype())
            self.exact_rows = None  # training moves the parameter: from here on the map is the truth
        if self.parametrization == "qr":
            return _qr_rows(self.weight_dk)
        return self.linear.weight

    @torch.no_grad()
    def set_rows(self, rows: torch.Tensor, exact: bool = False) -> None:
        """Set the rows (orthonormal to 1e-4). exact=True: forward returns these very numbers
        until the module trains (see exact_rows)."""
        rows = rows.detach().to(dtype=torch.float32, device=self._device())
        if rows.shape != (self.k, self.d):
            raise InterventionError(f"rotation has shape {tuple(rows.shape)}, expected ({self.k}, {self.d})")
        gram = rows @ rows.T
        if not torch.allclose(gram, torch.eye(self.k, device=rows.device), atol=1e-4):
            raise InterventionError(
                "the given rotation's rows are not orthonormal (R R^T != I); "
                "orthonormalise it first (e.g. torch.linalg.qr) or pass the rows a subspace was trained with"
            )
        if self.parametrization == "qr":
            self.weight_dk.copy_(rows.T)
        else:
            self.linear.weight = rows
        self.exact_rows = rows.clone() if exact else None

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype


class RotatedSubspace(nn.Module):
    """DII on a k-dim subspace: ``h_b + R^T (R h_s - R h_b)``.

    ``slices`` maps each variable of one hypothesis to a disjoint (start, stop) range of
    the k rotated dims, so several variables share one rotation.
    """

    def __init__(self, d: int, k: int, parametrization: str = DEFAULT_PARAMETRIZATION,
                 slices: dict[str, tuple[int, int]] | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.d, self.k, self.parametrization = d, k, parametrization
        self.rows = OrthonormalRows(d, k, parametrization, generator)
        self.slices = _check_slices(slices, k)
        masks = torch.zeros(max(len(self.slices), 1), k)
        for i, (start, stop) in enumerate(self.slices.values()):
            masks[i, start:stop] = 1.0
        if not self.slices:
            masks[0] = 1.0
        # [V, k]: which rotated dims each variable owns; not a parameter.
        self.register_buffer("slice_masks", masks, persistent=False)

    @classmethod
    def from_rotation(cls, rotation: torch.Tensor, parametrization: str = DEFAULT_PARAMETRIZATION,
                      slices: dict[str, tuple[int, int]] | None = None) -> "RotatedSubspace":
        if rotation.dim() != 2:
            raise InterventionError(f"rotation must be [k, d], got shape {tuple(rotation.shape)}")
        k, d = rotation.shape
        module = cls(d, k, parametrization=parametrization, slices=slices)
        module.rows.set_rows(rotation)
        return module

    @property
    def rotation(self) -> torch.Tensor:
        """[k, d], orthonormal rows, fp32."""
        return self.rows()

    @property
    def variables(self) -> list[str]:
        return list(self.slices)

    def forward(self, base: torch.Tensor, source: torch.Tensor,
                active: torch.Tensor | None = None) -> torch.Tensor:
        """base [B, d]; source [B, d] (all k dims swapped) or [B, V, d] with one source per
        variable slice and ``active`` [B, V] bool saying which variables each example swaps."""
        r = self.rotation
        hb = base.float()
        rb = hb @ r.T  # [B, k]
        if source.dim() == base.dim():
            delta = source.float() @ r.T - rb
            if active is not None:  # [B] bool: which examples are intervened at all
                delta = delta * active.to(delta.dtype).unsqueeze(-1)
        elif source.dim() == base.dim() + 1:
            n_vars = self.slice_masks.shape[0]
            if source.shape[-2] != n_vars:
                raise InterventionError(
                    f"source has {source.shape[-2]} variable sources but the subspace has {n_vars} "
                    f"slices ({', '.join(self.slices) or 'one, unnamed'}): pass one source per slice"
                )
            rs = source.float() @ r.T  # [B, V, k]
            weight = self.slice_masks.to(rs.dtype)  # [V, k]
            if active is not None:
                weight = weight * active.to(rs.dtype).unsqueeze(-1)  # [B, V, k]
            delta = ((rs - rb.unsqueeze(-2)) * weight).sum(dim=-2)
        else:
            raise InterventionError(
                f"source shape {tuple(source.shape)} does not fit base shape {tuple(base.shape)}: "
                "pass [B, d] (swap all dims) or [B, V, d] (one source per variable slice)"
            )
        return (hb + delta @ r).to(base.dtype)

    def extra_repr(self) -> str:
        return f"d={self.d}, k={self.k}, parametrization={self.parametrization!r}, slices={self.slices}"


def _check_slices(slices: dict[str, tuple[int, int]] | None, k: int) -> dict[str, tuple[int, int]]:
    if not slices:
        return {}
    out: dict[str, tuple[int, int]] = {}
    taken = torch.zeros(k, dtype=torch.bool)
    for name, span in slices.items():
        start, stop = (int(x) for x in span)
        if not 0 <= start < stop <= k:
            raise InterventionError(f"slice {name!r}={span} must satisfy 0 <= start < stop <= k={k}")
        if taken[start:stop].any():
            raise InterventionError(f"slice {name!r}={span} overlaps another variable's slice; make slices disjoint")
        taken[start:stop] = True
        out[str(name)] = (start, stop)
    return out


class BoundlessSubspace(nn.Module):
    """Boundless DAS (Wu et al. 2023): full d x d rotation and a learned boundary.

    The mask over rotated dims is ``m_j = sigmoid((boundary * d - j - 0.5) / temperature)``;
    the boundary is ``sigmoid(boundary_logit)`` in (0, 1), so its gradient never dies at a
    clamp. Rotated dims are centred on j + 0.5 so that, as the temperature goes to 0,
    dims below ``boundary * d`` become exactly 1 and the others exactly 0 (pyvene's
    two-sided sigmoid leaves dim 0 at 0.5 forever).
    """

    def __init__(self, d: int, temperature_start: float = 50.0, temperature_end: float = 0.1,
                 init_boundary: float = 0.5, parametrization: str = DEFAULT_PARAMETRIZATION,
                 generator: torch.Generator | None = None):
        super().__init__()
        if not 0.0 < init_boundary < 1.0:
            raise InterventionError(f"init_boundary must be in (0, 1), got {init_boundary}")
        if not temperature_start > 0 or not temperature_end > 0:
            raise InterventionError("temperatures must be positive")
        self.d, self.parametrization = d, parametrization
        self.rows = OrthonormalRows(d, d, parametrization, generator)
        self.boundary_logit = nn.Parameter(torch.tensor(math.log(init_boundary / (1 - init_boundary))))
        self.temperature_start, self.temperature_end = float(temperature_start), float(temperature_end)
        self.temperature = float(temperature_start)
        self.register_buffer("positions", torch.arange(d, dtype=torch.float32) + 0.5, persistent=False)

    @property
    def rotation(self) -> torch.Tensor:
        return self.rows()

    @property
    def boundary(self) -> torch.Tensor:
        """The boundary as a share of d, in (0, 1)."""
        return torch.sigmoid(self.boundary_logit)

    def set_temperature(self, temperature: float) -> None:
        if not temperature > 0:
            raise InterventionError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def temperature_at(self, step: int, total_steps: int) -> float:
        """Geometric schedule from temperature_start (step 0) to temperature_end (last step)."""
        frac = min(max(step / max(total_steps - 1, 1), 0.0), 1.0)
        return self.temperature_start * (self.temperature_end / self.temperature_start) ** frac

    def mask(self) -> torch.Tensor:
        return torch.sigmoid((self.boundary * self.d - self.positions) / self.temperature)

    @property
    def intervention_size(self) -> int:
        """Effective k: rotated dims whose mask is above 0.5."""
        return int((self.mask() > 0.5).sum())

    k = intervention_size

    @torch.no_grad()
    def hard_rotation(self) -> torch.Tensor:
        """[k, d]: the rotation rows the mask keeps (mask > 0.5), for export as a subspace."""
        return self.rotation[self.mask() > 0.5].detach().clone()

    selected_rows = hard_rotation  # the name every masked method's artifact reads

    def forward(self, base: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        r = self.rotation
        hb = base.float()
        # R is square and orthogonal, so R^T((1-m) R h_b + m R h_s) = h_b + R^T(m (R h_s - R h_b)).
        delta = (source.float() @ r.T - hb @ r.T) * self.mask()
        return (hb + delta @ r).to(base.dtype)

    def extra_repr(self) -> str:
        return f"d={self.d}, temperature={self.temperature:.4g}, parametrization={self.parametrization!r}"


class MaskedBasisPatch(nn.Module):
    """DBM, differentiable binary masking (the MIB causal-variable track's baseline): a
    learned mask m over the coordinates of a fixed orthonormal basis B [d, d] (the identity:
    the site's own dimensions; or principal directions), ``h_b + B^T (m * (B h_s - B h_b))``.
    In training m = sigmoid(logits / temperature), annealed towards binary as the
    temperature falls; in eval mode the mask is hard (logits > 0), which is exactly DII on
    the kept basis rows, so the result saves as a Subspace of those rows."""

    def __init__(self, basis: torch.Tensor | None, d: int | None = None, init_logit: float = 1.0):
        super().__init__()
        if basis is None:
            if d is None:
                raise InterventionError("MaskedBasisPatch needs a basis [d, d] or d for the identity basis")
            self.basis = None
        else:
            if basis.dim() != 2 or basis.shape[0] != basis.shape[1]:
                raise InterventionError(f"the basis must be square [d, d], got {tuple(basis.shape)}")
            d = basis.shape[0]
            self.register_buffer("basis", basis.detach().float().clone())
        self.d = int(d)
        self.logits = nn.Parameter(torch.full((self.d,), float(init_logit)))
        self.temperature = 1.0

    def set_temperature(self, temperature: float) -> None:
        if not temperature > 0:
            raise InterventionError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def mask(self) -> torch.Tensor:
        if self.training:
            return torch.sigmoid(self.logits / self.temperature)
        return (self.logits > 0).float()

    @property
    def k(self) -> int:
        """Basis coordinates the hard mask keeps."""
        return int((self.logits > 0).sum())

    @torch.no_grad()
    def selected_rows(self) -> torch.Tensor:
        """[k, d]: the kept basis rows (orthonormal), the subspace the hard mask swaps."""
        keep = self.logits.detach() > 0
        eye = torch.eye(self.d, device=self.logits.device) if self.basis is None else self.basis
        return eye[keep].detach().clone()

    def forward(self, base: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        hb = base.float()
        diff = source.float() - hb
        m = self.mask()
        if self.basis is None:
            return (hb + m * diff).to(base.dtype)
        return (hb + ((diff @ self.basis.T) * m) @ self.basis).to(base.dtype)

    def extra_repr(self) -> str:
        return f"d={self.d}, basis={'identity' if self.basis is None else 'given'}, temperature={self.temperature:.4g}"


class VanillaPatch(nn.Module):
    """Control: replace the whole vector with the source's."""

    def forward(self, base: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        return source.to(base.dtype)
