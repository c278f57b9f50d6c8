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
    skipped) or None for every token. HF `generate`'s decoding steps (a forward that
    continues a cache) are left alone, so only the prompt is edited, whatever its positions:
    deciding by the step's length instead edited every generated token of a prompt whose
    positions are all 0.
    """
    handles = []
    state = {"decoding": False}
    try:
        handles.append(model.hf.register_forward_pre_hook(_watch_decoding(state), with_kwargs=True))
        for entry in interventions:
            where_site, module, positions = entry
            site = where_site if isinstance(where_site, Site) else Site(where_site[0], where_site[1])
            model.check_site(site)
            handles.append(edit_hook(model.module_at(site), model.module_path(site)[1],
                                     _reft_edit(module, positions, state)))
        yield model
    finally:
        for h in handles:
            h.remove()


def _watch_decoding(state: dict):
    """A pre-hook on the whole model: is this forward a decoding step of `generate`? Read from
    the cache it continues (`cache_position` past 0, or a non-empty cache under either name,
    `past_key_values` or the newer `cache`)."""

    def pre(module, args, kwargs):
        position = kwargs.get("cache_position")
        if position is not None and position.numel():
            state["decoding"] = int(position.reshape(-1)[0]) > 0
            return
        cache = kwargs.get("past_key_values", kwargs.get("cache"))
        if cache is None:
            state["decoding"] = False
        elif hasattr(cache, "get_seq_length"):
            state["decoding"] = int(cache.get_seq_length()) > 0
        else:  # a legacy tuple of per-layer (key, value)
            state["decoding"] = len(cache) > 0 and cache[0] is not None and cache[0][0].shape[-2] > 0

    return pre


def _reft_edit(module: nn.Module, positions: torch.Tensor | None, state: dict):
    # The index tensors and the largest position are worked out once per attach, not in
    # every layer's hook: on a GPU each `.max()` / boolean mask would be a device sync.
    if positions is not None and positions.dim() == 1:
        positions = positions[:, None]
    pos_max = None if positions is None else int(positions.max())
    indices: dict = {}  # device -> (rows, cols)

    def edit(h: torch.Tensor) -> torch.Tensor:
        if state["decoding"]:
            return h  # a generation step past the prompt: leave it alone
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
