"""The fast path for training: `SuffixRunner`. One base forward (`prepare`) keeps the
model's own KV cache of the prefix before the earliest intervened token and the base
activations at the sites; each step (`logits`) recomputes only the suffix tokens through
the model's own forward with that cache. It uses a plain torch forward hook at the site
rather than an nnsight trace: a trace costs about 2 ms per call, which is most of a step
on a small model, and a hook does the same replacement.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch
from torch import nn

from interventions.apply import answer_logits, at_positions, replace_at_positions, check_sites, edit_hook
from interventions.errors import InterventionError
from interventions.heap import release_free_heap
from interventions.model import Model, Site
from interventions.positions import Batch
from interventions.prepared import Prepared

def _cache_argument(model: Model) -> str:
    """transformers <= 5.39 names the cache argument `past_key_values`, later ones `cache`."""
    params = inspect.signature(model.hf.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _new_cache(model: Model, prepared: Prepared, skipped: list[int]):
    """A fresh cache holding the prefix keys/values of `prepared`'s rows: each step starts
    clean, so no step's graph leaks into the next and nothing has to be cropped back. The
    rows are gathered here, once, and only for the layers the step runs: a skipped block
    reads no cache, so its layer holds a stand-in of the right shape that takes no memory
    (the cache's length is read from its shape). A plain DynamicLayer takes the tensors as
    they are; `update` would copy them once more (it concatenates onto an empty tensor)."""
    from transformers import DynamicCache

    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:  # transformers without per-layer cache classes
        DynamicLayer = None
    try:
        cache = DynamicCache(config=model.config)
    except Exception:  # noqa: BLE001  (configs DynamicCache cannot read: grow layers lazily)
        cache = DynamicCache()
    skip = set(skipped)
    for i in range(len(prepared.prefix_kv)):
        layer = cache.layers[i] if i < len(getattr(cache, "layers", [])) else None
        if DynamicLayer is not None and type(layer) is DynamicLayer and not getattr(layer, "is_initialized", True):
            k, v = prepared.layer_kv(i, stand_in=i in skip)
            layer.update(k[:, :, :0], v[:, :, :0])  # its own set-up (device, dtype), on nothing
            layer.keys, layer.values = k, v
        else:  # other layer kinds (sliding windows, ...) keep their own update
            cache.update(*prepared.layer_kv(i), i)
    return cache


def _prefix_kv(cache, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(cache, "layers"):
        pairs = [(layer.keys, layer.values) for layer in cache.layers]
    else:  # legacy tuple of (k, v)
        pairs = list(cache)
    return [(k[:, :, :length].detach(), v[:, :, :length].detach()) for k, v in pairs]


class _ForwardSwap:
    """Instances' `forward` replaced until remove(), which puts back exactly what was there
    (nnsight keeps its own wrapper as the instance's `forward`)."""

    def __init__(self, replacements: list[tuple[nn.Module, Callable]]):
        self._saved = [(module, module.__dict__.get("forward")) for module, _ in replacements]
        for module, forward in replacements:
            module.forward = forward

    def remove(self) -> None:
        for module, original in self._saved:
            if original is None:
                del module.forward
            else:
                module.forward = original


def restricted_head(model: Model, rows: torch.Tensor) -> _ForwardSwap | None:
    """Make the model's output embedding compute only the unembedding rows `rows` until the
    returned handle's remove(); None when the model has no linear output embedding (an MLP
    classifier's head is small: its logits are cut afterwards). The answer logits are the
    same numbers as the full head's columns, for a fraction of the head's cost (the
    full-vocabulary head is about half of a GPT-2-small step)."""
    get = getattr(model.hf, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if not isinstance(head, nn.Linear):
        return None
    rows = rows.to(head.weight.device)
    bias = None if head.bias is None else head.bias[rows]
    return _ForwardSwap([(head, lambda h: nn.functional.linear(h, head.weight[rows], bias))])


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
        sites = check_sites(self.model, sites or [self.site])
        if self.site.key not in {s.key for s in sites}:
            sites = [self.site, *sites]
        return self.prepare_positions({"_": batch}, {"_": sites})["_"]

    @torch.no_grad()
    def prepare_positions(self, batches: dict, sites: dict) -> dict:
        """`prepare` for several token positions of the same prompts from one forward:
        `batches[name]` is the batch resolved at one position (the same inputs), `sites[name]`
        the sites read there. Each position's Prepared keeps the KV prefix before its own
        intervened tokens (views of the one cache). Prompts that differ between the batches
        are prepared one forward each."""
        model = self.model
        first = next(iter(batches.values()))
        same = all(b.inputs.keys() == first.inputs.keys() and all(torch.equal(b.inputs[k], first.inputs[k])
                                                                   for k in first.inputs) for b in batches.values())
        if not same:
            return {name: self.prepare_positions({name: b}, {name: sites[name]})[name] for name, b in batches.items()}
        acts: dict[str, dict[str, torch.Tensor]] = {name: {} for name in batches}
        handles = []
        for name, batch in batches.items():
            for site in check_sites(model, sites[name]):
                def grab(t, key=site.key, batch=batch, into=acts[name]):
                    into[key] = at_positions(t, batch.positions).detach().clone()
                    return t

                handles.append(edit_hook(model.module_at(site), model.module_path(site)[1], grab))
        if model.is_causal_lm:
            handles += self._record_block_outputs()
        use_cache = self._cache_arg is not None and all(b.positions is not None for b in batches.values())
        extra = {"use_cache": True} if use_cache else {}
        if self._keeps_logits:
            extra["logits_to_keep"] = 1  # the base logits are not needed: skip [B, T, V]
        try:
            out = model.forward(first.inputs, **extra)
        finally:
            for h in handles:
                h.remove()
        cache = None
        if use_cache:
            # Recent transformers name the output `cache` (`past_key_values` is a deprecated alias).
            cache = getattr(out, "cache", None) if "cache" in out else getattr(out, "past_key_values", None)
            if cache is None:
                raise InterventionError(f"{model.name} returned no KV cache; SuffixRunner needs a causal LM with use_cache")
        prepared = {name: self._prepared(batch, acts[name], cache) for name, batch in batches.items()}
        del out, cache
        if model.device.type == "cpu":  # the forward's freed transients sit between the kept tensors
            release_free_heap()
        return prepared

    @staticmethod
    def _prepared(batch: Batch, acts: dict[str, torch.Tensor], cache) -> Prepared:
        """The suffix inputs and the KV prefix before the batch's earliest intervened token."""
        prefix_len = int(batch.positions.min()) if cache is not None else 0
        inputs = dict(batch.inputs)
        prefix_kv = None
        if prefix_len > 0:
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

    def logits(self, prepared: Prepared, fn: Callable[[torch.Tensor], torch.Tensor], site: Site | None = None,
               vocab_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Answer logits [B, V] with the site's activation at each example's position
        replaced by fn(base activation). With `vocab_rows` (token ids), only those rows of the
        unembedding are computed: [B, len(vocab_rows)], column j for token vocab_rows[j]."""
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
            handle = edit_hook(model.module_at(site), model.module_path(site)[1],
                           lambda h: replace_at_positions(h, positions, new))
        extra = {}
        answer_positions = prepared.answer_positions
        if prepared.prefix_kv is not None:
            extra[self._cache_arg] = _new_cache(model, prepared, skipped or [])
            extra["use_cache"] = True
        if answer_positions is not None and self._keeps_logits:
            # Only the answer tokens go through the LM head.
            keep = torch.unique(answer_positions)
            extra["logits_to_keep"] = keep
            answer_positions = torch.searchsorted(keep, answer_positions)
        head = restricted_head(model, vocab_rows) if vocab_rows is not None else None
        try:
            out = model.forward(prepared.inputs, **extra)
        finally:
            handle.remove()
            if head is not None:
                head.remove()
        logits = answer_logits(out, answer_positions)
        if vocab_rows is not None and head is None:  # no separate head to restrict: cut the full logits
            logits = logits[:, vocab_rows]
        return logits

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
        replacements = []
        for layer in layers:
            out = self._block_output_builders[layer](hidden)
            replacements.append((self._block(layer), lambda *_a, _out=out, **_k: _out))
        return _ForwardSwap(replacements)
