"""Forward passes with interventions.

- `collect`, `collect_many`, `run_with_interventions`: through nnsight (the way into the
  model), the reference path: every token, every layer.
- `SuffixRunner`: the fast path for training. One base forward (`prepare`) keeps the
  model's own KV cache of the prefix before the earliest intervened token and the base
  activations at the sites; each step (`logits`) recomputes only the suffix tokens through
  the model's own forward with that cache. It uses a plain torch forward hook at the site
  rather than an nnsight trace: a trace costs about 2 ms per call, which is most of a step
  on a small model, and a hook does the same replacement.
- `attach`: plain forward hooks applying ReFT-style modules h -> module(h) at given token
  positions, for LoReFT training and HF `generate` (applied on the prompt forward only).
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, replace
from typing import Callable, Iterable

import torch
from torch import nn

from interventions.errors import InterventionError
from interventions.model import Model, Site
from interventions.positions import Batch

# Within one block, the order activations are computed in (nnsight visits modules in order).
_COMPONENT_ORDER = {"head_output": 0, "attn_output": 1, "mlp_output": 2, "block_output": 3}


def _execution_order(model: Model, sites: Iterable[Site]) -> list[Site]:
    return sorted(sites, key=lambda s: (s.layer % model.n_layers, _COMPONENT_ORDER[s.component]))


def _first(t):
    return t[0] if isinstance(t, tuple) else t


def _answer_logits(out, answer_positions: torch.Tensor | None) -> torch.Tensor:
    logits = getattr(out, "logits", None)
    if logits is None:
        logits = _first(out) if isinstance(out, tuple) else out
    if logits.dim() == 3:
        if answer_positions is None:
            raise InterventionError("sequence logits need the batch's answer positions; build the batch with encode()")
        return logits[torch.arange(logits.shape[0], device=logits.device), answer_positions.to(logits.device)]
    return logits


def _tokens_view(h: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor | None:
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


def _at_positions(h: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    tokens = _tokens_view(h, positions)
    if tokens is None:
        return h
    return tokens[torch.arange(tokens.shape[0], device=h.device), positions.to(h.device)]


def _replace_at_positions(h: torch.Tensor, positions: torch.Tensor | None, new: torch.Tensor) -> torch.Tensor:
    tokens = _tokens_view(h, positions)
    if tokens is None:
        return new.to(h.dtype)
    rows = torch.arange(tokens.shape[0], device=h.device)
    return tokens.index_put((rows, positions.to(h.device)), new.to(h.dtype)).view(h.shape)


def _check_sites(model: Model, sites) -> list[Site]:
    return [model.check_site(s) for s in sites]


def _where(model: Model, site: Site) -> tuple[int, str]:
    """The module a site lives in, ignoring its position (positions come from the batch)."""
    return site.layer % model.n_layers, site.component


def collect_many(model: Model, batch: Batch, sites: list[Site]) -> dict[str, torch.Tensor]:
    """Activations at several sites in one forward: {site.key: [B, d]} at each example's
    position (batch.positions; the whole vector for models without positions)."""
    sites = _check_sites(model, sites)
    modules = {_where(model, s): s for s in _execution_order(model, sites)}  # each module read once
    args, kwargs = model.call_args(batch.inputs)
    saved = {}
    with torch.no_grad(), model.nn.trace(*args, **kwargs):
        for where_key, site in modules.items():
            env = model.envoy_at(site)
            where = model.module_path(site)[1]
            t = _first(env.output if where == "output" else env.input)
            saved[where_key] = _at_positions(t, batch.positions).save()
    return {s.key: saved[_where(model, s)].detach() for s in sites}


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
        key = _where(model, model.check_site(site))
        by_module.setdefault(key, []).append(fn)
        first_site.setdefault(key, site)
    args, kwargs = model.call_args(batch.inputs)
    with model.nn.trace(*args, **kwargs):
        for site in _execution_order(model, first_site.values()):
            env = model.envoy_at(site)
            where = model.module_path(site)[1]
            value = env.output if where == "output" else env.input
            h = _first(value)
            # Several interventions at one module apply in the order given.
            for fn in by_module[_where(model, site)]:
                h = _replace_at_positions(h, batch.positions, fn(_at_positions(h, batch.positions)))
            new_value = (h, *value[1:]) if isinstance(value, tuple) else h
            if where == "output":
                env.output = new_value
            else:
                env.input = new_value
        out = model.nn.output.save()
    return _answer_logits(out, batch.answer_positions)


# ---------------------------------------------------------------------- fast path


def _cache_argument(model: Model) -> str:
    """transformers <= 5.39 names the cache argument `past_key_values`, later ones `cache`."""
    params = inspect.signature(model.hf.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _new_cache(model: Model, prefix_kv: list[tuple[torch.Tensor, torch.Tensor]]):
    """A fresh cache holding the prefix keys/values (no copy): each step starts clean, so no
    step's graph leaks into the next and nothing has to be cropped back."""
    from transformers import DynamicCache

    try:
        cache = DynamicCache(config=model.config)
    except Exception:  # noqa: BLE001  (configs DynamicCache cannot read: grow layers lazily)
        cache = DynamicCache()
    for i, (k, v) in enumerate(prefix_kv):
        cache.update(k, v, i)
    return cache


def _prefix_kv(cache, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(cache, "layers"):
        pairs = [(layer.keys, layer.values) for layer in cache.layers]
    else:  # legacy tuple of (k, v)
        pairs = list(cache)
    return [(k[:, :, :length].detach(), v[:, :, :length].detach()) for k, v in pairs]


@dataclass
class Prepared:
    """What the suffix steps of one base batch need; `select` cuts minibatches."""

    inputs: dict[str, torch.Tensor]  # the suffix tokens' inputs (attention mask: full length)
    positions: torch.Tensor | None  # intervened index per example, relative to the suffix start
    answer_positions: torch.Tensor | None  # relative to the suffix start
    acts: dict[str, torch.Tensor]  # site key -> base activation [B, d] at each example's position
    prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None  # per layer [B, heads, P, head_dim]
    prefix_len: int = 0

    def __len__(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    def select(self, idx) -> "Prepared":
        idx = torch.as_tensor(idx) if not isinstance(idx, slice) else torch.arange(len(self))[idx]
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        pick = lambda t: None if t is None else t[idx.to(t.device)]  # noqa: E731
        return replace(
            self,
            inputs={k: pick(v) for k, v in self.inputs.items()},
            positions=pick(self.positions),
            answer_positions=pick(self.answer_positions),
            acts={k: pick(v) for k, v in self.acts.items()},
            prefix_kv=None if self.prefix_kv is None else [(pick(k), pick(v)) for k, v in self.prefix_kv],
        )

    def to(self, device) -> "Prepared":
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(
            self,
            inputs={k: mv(v) for k, v in self.inputs.items()},
            positions=mv(self.positions),
            answer_positions=mv(self.answer_positions),
            acts={k: mv(v) for k, v in self.acts.items()},
            prefix_kv=None if self.prefix_kv is None else [(mv(k), mv(v)) for k, v in self.prefix_kv],
        )


def _hook(module: nn.Module, where: str, edit: Callable[[torch.Tensor], torch.Tensor]):
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


class SuffixRunner:
    """Fast DII steps at `site`: `prepare(batch)` once (no grad), then `logits(prepared, fn)`
    per step. Equal to `run_with_interventions` (to float rounding) but recomputes only the
    tokens from the earliest intervened position on, with the model's own KV cache. For
    models without a causal cache (MLP, BERT) a step is the full forward with a hook.

    For sweeps, `prepare(batch, sites=[...])` stores base activations at several sites from
    one forward (the KV prefix does not depend on the layer); pass `site=` to `logits`."""

    def __init__(self, model: Model, site: Site):
        self.model = model
        self.site = model.check_site(site)
        self._cache_arg = _cache_argument(model) if model.is_causal_lm else None
        params = inspect.signature(model.hf.forward).parameters
        self._keeps_logits = "logits_to_keep" in params
        # Per block (layer index): how to rebuild its output around a hidden-states tensor,
        # learned from a real forward in `prepare`; absent where it cannot be rebuilt.
        self._block_output_builders: dict[int, Callable[[torch.Tensor], object]] = {}

    @torch.no_grad()
    def prepare(self, batch: Batch, sites: list[Site] | None = None) -> Prepared:
        model = self.model
        sites = _check_sites(model, sites or [self.site])
        if self.site.key not in {s.key for s in sites}:
            sites = [self.site, *sites]
        acts: dict[str, torch.Tensor] = {}
        handles = []
        for site in sites:
            path, where = model.module_path(site)

            def grab(t, key=site.key):
                acts[key] = _at_positions(t, batch.positions).detach().clone()
                return t

            handles.append(_hook(model.module_at(site), where, grab))
        if model.is_causal_lm:
            handles += self._record_block_outputs()
        use_cache = self._cache_arg is not None and batch.positions is not None
        extra = {"use_cache": True} if use_cache else {}
        if self._keeps_logits:
            extra["logits_to_keep"] = 1  # the base logits are not needed: skip [B, T, V]
        try:
            out = model.forward(batch.inputs, **extra)
        finally:
            for h in handles:
                h.remove()
        prefix_len = int(batch.positions.min()) if use_cache else 0
        inputs = dict(batch.inputs)
        prefix_kv = None
        if prefix_len > 0:
            # Recent transformers name the output `cache` (`past_key_values` is a deprecated alias).
            cache = getattr(out, "cache", None) if "cache" in out else getattr(out, "past_key_values", None)
            if cache is None:
                raise InterventionError(f"{model.name} returned no KV cache; SuffixRunner needs a causal LM with use_cache")
            prefix_kv = _prefix_kv(cache, prefix_len)
            inputs = {
                k: (v[:, prefix_len:] if k != "attention_mask" and v.dim() >= 2 and v.shape[1] == batch.seq_len else v)
                for k, v in inputs.items()
            }
        shift = lambda t: None if t is None else t - prefix_len  # noqa: E731
        return Prepared(
            inputs=inputs,
            positions=shift(batch.positions),
            answer_positions=shift(batch.answer_positions),
            acts=acts,
            prefix_kv=prefix_kv,
            prefix_len=prefix_len,
        )

    def logits(self, prepared: Prepared, fn: Callable[[torch.Tensor], torch.Tensor], site: Site | None = None) -> torch.Tensor:
        """Answer logits [B, V] with the site's activation at each example's position
        replaced by fn(base activation)."""
        model = self.model
        site = model.check_site(site) if site is not None else self.site
        if site.key not in prepared.acts:
            raise InterventionError(f"site {site.key} was not prepared; pass it in prepare(batch, sites=[...])")
        new = fn(prepared.acts[site.key])
        positions = prepared.positions
        skipped = self._skippable_blocks(prepared, site)
        if skipped is not None:
            handle = self._skip_blocks(skipped, new)
        else:
            handle = _hook(model.module_at(site), model.module_path(site)[1],
                           lambda h: _replace_at_positions(h, positions, new))
        extra = {}
        answer_positions = prepared.answer_positions
        if prepared.prefix_kv is not None:
            extra[self._cache_arg] = _new_cache(model, prepared.prefix_kv)
            extra["use_cache"] = True
        if answer_positions is not None and self._keeps_logits:
            # Only the answer tokens go through the LM head.
            keep = torch.unique(answer_positions)
            extra["logits_to_keep"] = keep
            answer_positions = torch.searchsorted(keep, answer_positions)
        try:
            out = model.forward(prepared.inputs, **extra)
        finally:
            handle.remove()
        return _answer_logits(out, answer_positions)

    # Skipping the blocks at and below a block_output site. When the suffix is the one
    # intervened token per example, block L's output there is replaced by fn(h_base) whatever
    # blocks 0..L compute, and nothing later in the step reads their keys/values of that token
    # (a layer's attention reads only its own layer's cache; the cache length and the masks
    # are fixed before the first block runs). So blocks 0..L need not run: block L returns
    # fn(h_base) and the blocks below it return any tensor of the right shape. This removes
    # the lower half of the step's transformer work (and, on a GPU, of its kernel launches).

    def _record_block_outputs(self) -> list:
        """Hooks that note, for every block, how its output is built around the hidden states
        (a bare tensor, or a tuple whose other entries are all None)."""
        def note(layer):
            def hook(_m, _args, output):
                if isinstance(output, torch.Tensor):
                    self._block_output_builders[layer] = lambda h: h
                elif isinstance(output, tuple) and all(x is None for x in output[1:]):
                    n = len(output) - 1
                    self._block_output_builders[layer] = lambda h, n=n: (h, *([None] * n))
                else:  # other entries the model's forward may read: never skip this block
                    self._block_output_builders.pop(layer, None)
            return hook

        return [self._block(layer).register_forward_hook(note(layer)) for layer in range(self.model.n_layers)]

    def _block(self, layer: int) -> nn.Module:
        return self.model.module_at(Site(layer, "block_output"))

    def _skippable_blocks(self, prepared: Prepared, site: Site) -> list[int] | None:
        """The layers 0..L whose blocks a step may skip, or None when it must run them all."""
        if prepared.prefix_kv is None or site.component != "block_output":
            return None
        ids = prepared.inputs.get(self.model.input_name)
        if ids is None or ids.dim() < 2 or ids.shape[1] != 1:  # the suffix must be the intervened token alone
            return None
        layers = list(range(site.layer % self.model.n_layers + 1))
        for layer in layers:
            block = self._block(layer)
            # Other hooks would see the stand-in outputs (and one after ours on block L would edit the result).
            if layer not in self._block_output_builders or block._forward_hooks or block._forward_pre_hooks:
                return None
        return layers

    def _skip_blocks(self, layers: list[int], new: torch.Tensor):
        """Make blocks `layers` return fn(h_base) as [B, 1, d] (in their own output structure)
        instead of running; returns a handle whose remove() restores them."""
        hidden = new.to(self.model.dtype).unsqueeze(1)
        saved = []
        for layer in layers:
            block = self._block(layer)
            # nnsight keeps its own wrapper as the instance's `forward`: put back exactly what was there.
            saved.append((block, block.__dict__.get("forward")))
            out = self._block_output_builders[layer](hidden)
            block.forward = lambda *_a, _out=out, **_k: _out

        class _Restore:
            @staticmethod
            def remove():
                for block, original in saved:
                    if original is None:
                        del block.forward
                    else:
                        block.forward = original

        return _Restore()


# ---------------------------------------------------------------------- ReFT hooks


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
            handles.append(_hook(model.module_at(site), model.module_path(site)[1], _reft_edit(module, positions)))
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
