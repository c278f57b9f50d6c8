"""Forward passes with interventions through nnsight (the way into the model), the
reference path: every token, every layer. `collect`, `collect_many`,
`run_with_interventions`, and the position helpers the fast path (suffix.py) and the
ReFT hooks (attach.py) share.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from interventions.errors import InterventionError
from interventions.model import Model, Site
from interventions.positions import Batch

# Within one block, the order activations are computed in (nnsight visits modules in order).
_COMPONENT_ORDER = {"head_output": 0, "attn_output": 1, "mlp_output": 2, "block_output": 3}


def execution_order(model: Model, sites: Iterable[Site]) -> list[Site]:
    return sorted(sites, key=lambda s: (s.layer % model.n_layers, _COMPONENT_ORDER[s.component]))


def first(t):
    return t[0] if isinstance(t, tuple) else t


def answer_logits(out, answer_positions: torch.Tensor | None) -> torch.Tensor:
    logits = getattr(out, "logits", None)
    if logits is None:
        logits = first(out) if isinstance(out, tuple) else out
    if logits.dim() == 3:
        if answer_positions is None:
            raise InterventionError("sequence logits need the batch's answer positions; build the batch with encode()")
        return logits[torch.arange(logits.shape[0], device=logits.device), answer_positions.to(logits.device)]
    return logits


def tokens_view(h: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor | None:
    """h as [B, T, d] when it holds token activations: most modules give [B, T, d]; some
    flatten tokens into rows (OPT's MLP sees [B * T, d]). None for per-example vectors."""
    if positions is None:
        return None
    if h.dim() == 3:
        return h
    B = positions.shape[0]
    if h.dim() == 2 and h.shape[0] != B and h.shape[0] % B == 0:
        return h.view(B, h.shape[0] // B, h.shape[1])
    return None


def at_positions(h: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    tokens = tokens_view(h, positions)
    if tokens is None:
        return h
    return tokens[torch.arange(tokens.shape[0], device=h.device), positions.to(h.device)]


def replace_at_positions(h: torch.Tensor, positions: torch.Tensor | None, new: torch.Tensor) -> torch.Tensor:
    tokens = tokens_view(h, positions)
    if tokens is None:
        return new.to(h.dtype)
    rows = torch.arange(tokens.shape[0], device=h.device)
    return tokens.index_put((rows, positions.to(h.device)), new.to(h.dtype)).view(h.shape)


def check_sites(model: Model, sites) -> list[Site]:
    return [model.check_site(s) for s in sites]


def site_slot(model: Model, site: Site) -> tuple[int, str]:
    """The module a site lives in, ignoring its position (positions come from the batch)."""
    return site.layer % model.n_layers, site.component


def collect_many(model: Model, batch: Batch, sites: list[Site]) -> dict[str, torch.Tensor]:
    """Activations at several sites in one forward: {site.key: [B, d]} at each example's
    position (batch.positions; the whole vector for models without positions)."""
    sites = check_sites(model, sites)
    modules = {site_slot(model, s): s for s in execution_order(model, sites)}  # each module read once
    args, kwargs = model.call_args(batch.inputs)
    saved = {}
    with torch.no_grad(), model.nn.trace(*args, **kwargs):
        for where_key, site in modules.items():
            env = model.envoy_at(site)
            where = model.module_path(site)[1]
            t = first(env.output if where == "output" else env.input)
            saved[where_key] = at_positions(t, batch.positions).save()
    return {s.key: saved[site_slot(model, s)].detach() for s in sites}


def collect(model: Model, batch: Batch, site: Site) -> torch.Tensor:
    """Activation [B, d] at `site` for each example at its own position."""
    return collect_many(model, batch, [site])[site.key]


def _as_fn(entry) -> tuple[Site, Callable[[torch.Tensor], torch.Tensor]]:
    if len(entry) == 2:
        return entry[0], entry[1]
    if len(entry) == 3:  # (site, DII module, source activations): fn(h) = module(h, source)
        site, module, source = entry
        return site, (lambda h, module=module, source=source: module(h, source))
    raise InterventionError("each intervention is (site, fn) or (site, module, source_activations)")


def run_with_interventions(model: Model, batch: Batch, interventions) -> torch.Tensor:
    """Answer logits [B, V] with each site's activation at each example's position replaced
    by fn(base activation). Gradients reach parameters used in fn."""
    entries = [_as_fn(e) for e in interventions]
    by_module: dict[tuple[int, str], list[Callable]] = {}
    first_site: dict[tuple[int, str], Site] = {}
    for site, fn in entries:
        key = site_slot(model, model.check_site(site))
        by_module.setdefault(key, []).append(fn)
        first_site.setdefault(key, site)
    args, kwargs = model.call_args(batch.inputs)
    with model.nn.trace(*args, **kwargs):
        for site in execution_order(model, first_site.values()):
            env = model.envoy_at(site)
            where = model.module_path(site)[1]
            value = env.output if where == "output" else env.input
            h = first(value)
            # Several interventions at one module apply in the order given.
            for fn in by_module[site_slot(model, site)]:
                h = replace_at_positions(h, batch.positions, fn(at_positions(h, batch.positions)))
            new_value = (h, *value[1:]) if isinstance(value, tuple) else h
            if where == "output":
                env.output = new_value
            else:
                env.input = new_value
        out = model.nn.output.save()
    return answer_logits(out, batch.answer_positions)


def edit_hook(module: nn.Module, where: str, edit: Callable[[torch.Tensor], torch.Tensor]):
    """Register a plain forward (pre-)hook that replaces the module's output (or first input)."""
    if where == "output":
        def fwd(_m, _args, output):
            if isinstance(output, tuple):
                return (edit(output[0]), *output[1:])
            return edit(output)

        return module.register_forward_hook(fwd)

    def pre(_m, args):
        return (edit(args[0]), *args[1:])

    return module.register_forward_pre_hook(pre)
