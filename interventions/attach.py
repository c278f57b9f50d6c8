"""ReFT hooks: `attach` applies ReFT-style modules h -> module(h) at given token positions
with plain forward hooks, for LoReFT training and HF `generate` (applied on the prompt
forward only)."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from interventions.apply import edit_hook
from interventions.errors import InterventionError
from interventions.model import Model, Site

@contextlib.contextmanager
def attach(model: Model, interventions):
    """Apply ReFT-style modules h -> module(h) while the context is open.

    `interventions`: list of (site or (layer, component), module, positions) where positions
    is a LongTensor [B, n] of token indices per example (entries < 0 are padding and
    skipped) or None for every token. A forward whose sequence does not reach the largest
    position (HF `generate`'s single-token steps) is left alone, so only the prompt is edited.
    """
    handles = []
    try:
        for entry in interventions:
            where_site, module, positions = entry
            site = where_site if isinstance(where_site, Site) else Site(where_site[0], where_site[1])
            model.check_site(site)
            handles.append(edit_hook(model.module_at(site), model.module_path(site)[1], _reft_edit(module, positions)))
        yield model
    finally:
        for h in handles:
            h.remove()


def _reft_edit(module: nn.Module, positions: torch.Tensor | None):
    # The index tensors and the largest position are worked out once per attach, not in
    # every layer's hook: on a GPU each `.max()` / boolean mask would be a device sync.
    if positions is not None and positions.dim() == 1:
        positions = positions[:, None]
    pos_max = None if positions is None else int(positions.max())
    indices: dict = {}  # device -> (rows, cols)

    def edit(h: torch.Tensor) -> torch.Tensor:
        if positions is None or h.dim() == 2:
            return module(h).to(h.dtype)
        if h.shape[1] <= pos_max:
            return h  # a generation step past the prompt: leave it alone
        if positions.shape[0] != h.shape[0]:
            raise InterventionError(
                f"intervention positions are for {positions.shape[0]} examples but the forward has {h.shape[0]}; "
                "give one row of positions per example"
            )
        if h.device not in indices:
            pos = positions.to(h.device)
            valid = pos >= 0
            rows = torch.arange(h.shape[0], device=h.device)[:, None].expand_as(pos)[valid]
            indices[h.device] = (rows, pos[valid])
        rows, cols = indices[h.device]
        return h.index_put((rows, cols), module(h[rows, cols]).to(h.dtype))

    return edit
