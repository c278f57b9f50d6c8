"""Loading a network and addressing its sites, with no table per architecture.

`load_model` takes a local Hugging Face directory, a hub id, or a plain torch module and
returns a `Model`: the frozen torch module, its nnsight wrapper (the way into the model),
the tokenizer, and the sites it offers.

How sites are found (generically, from the module tree):
- blocks: the largest group of same-class composite children of one nn.ModuleList or
  nn.Sequential (GPT-2 `transformer.h`, Llama `model.layers`, BERT `encoder.layer`, our
  MLP's `layers`). Layer i's `block_output` is block i's output (first element if a tuple):
  the residual stream after the block, or for an MLP the hidden layer's activation.
- a flat MLP (nn.Sequential of Linear/activation modules): layer i is the i-th hidden
  activation module's output (or, when activations are functional, the i-th hidden Linear).
- `attn_output`: the block's child named like attention (attn, attention, self_attn, ...).
  For BERT that is `attention`, whose output already includes the residual and LayerNorm.
- `mlp_output`: the block's child named like an MLP (mlp, feed_forward, ffn); without one
  (OPT, BERT) the last Linear of the block outside attention that maps back to the hidden
  size (OPT `fc2`, BERT `output.dense`): the MLP's output before residual add and norm.
- `head_output`: the input of attention's output projection (o_proj, c_proj, dense,
  out_proj, ...): all heads concatenated, [n_heads * head_dim]; head h is the slice
  `h * head_dim : (h + 1) * head_dim` (`Model.head_dim`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from interventions.errors import InterventionError

COMPONENTS = ("block_output", "attn_output", "mlp_output", "head_output")
_ATTN_NAME = re.compile(r"attn|attention", re.I)
_MLP_NAME = re.compile(r"mlp|feed_?forward|ffn", re.I)
_NOT_A_SUBLAYER = re.compile(r"norm|drop|ln", re.I)
_OUT_PROJ_NAME = re.compile(r"^(o_proj|out_proj|c_proj|dense|wo|proj|out)$")
_PARAMETER_FREE_NOT_ACTIVATION = (nn.Dropout, nn.Identity, nn.Flatten)


@dataclass(frozen=True)
class Site:
    """Where an intervention acts: block `layer`, which `component`, which token `position`
    (an index, negative from the end of each example's real tokens, "last", a named task
    position, or None for models without positions)."""

    layer: int
    component: str = "block_output"
    position: int | str | None = "last"

    def __post_init__(self):
        if not isinstance(self.layer, int) or isinstance(self.layer, bool):
            raise InterventionError(f"a site's layer is an integer, got {self.layer!r}")
        if isinstance(self.position, bool):
            raise InterventionError(f"a site's position is an index, 'last' or a task position name, not {self.position!r}")

    @property
    def key(self) -> str:
        # A model without token positions (an MLP) reads the whole vector: "vector".
        position = "vector" if self.position is None else self.position
        return f"L{self.layer}.{self.component}.{position}"

    @classmethod
    def parse(cls, key: str) -> "Site":
        m = re.fullmatch(r"L(-?\d+)\.([A-Za-z_]+)\.(.+)", key.strip())
        if not m:
            raise InterventionError(f"site key {key!r} is not like 'L3.block_output.last'")
        layer, component, pos = int(m.group(1)), m.group(2), m.group(3)
        position: int | str | None
        if pos in ("vector", "None"):
            position = None
        elif re.fullmatch(r"-?\d+", pos):
            position = int(pos)
        else:
            position = pos
        return cls(layer, component, position)

    def __str__(self) -> str:
        return self.key


def _linear_out_features(module: nn.Module) -> int | None:
    """Output width of a Linear-like module (nn.Linear, GPT-2's Conv1D), else None."""
    if isinstance(module, nn.Linear):
        return module.out_features
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
        return int(module.nf)
    return None


def _is_linear(module: nn.Module) -> bool:
    return _linear_out_features(module) is not None


def _find_blocks(root: nn.Module) -> tuple[str, list[str]]:
    """(kind, module paths of the layers): kind "blocks" for repeated composite blocks,
    "flat" for a flat MLP container."""
    best: list[str] = []
    for path, module in root.named_modules():
        if not isinstance(module, (nn.ModuleList, nn.Sequential)):
            continue
        groups: dict[type, list[str]] = {}
        for name, child in module.named_children():
            if len(list(child.children())) > 0 and any(True for _ in child.parameters()):
                groups.setdefault(type(child), []).append(f"{path}.{name}" if path else name)
        for paths in groups.values():
            if len(paths) > len(best):
                best = paths
    if best:
        return "blocks", best
    # A flat MLP: the container with the most Linear children.
    containers = [
        (path, list(module.named_children()))
        for path, module in [("", root), *root.named_modules()]
        if isinstance(module, (nn.ModuleList, nn.Sequential))
    ]
    containers = [(p, ch) for p, ch in containers if sum(_is_linear(c) for _, c in ch) >= 2]
    if not containers:
        return "flat", []
    path, children = max(containers, key=lambda pc: sum(_is_linear(c) for _, c in pc[1]))
    full = lambda name: f"{path}.{name}" if path else name  # noqa: E731
    last_linear = max(i for i, (_, c) in enumerate(children) if _is_linear(c))
    activations = [
        full(name)
        for i, (name, c) in enumerate(children)
        if i < last_linear
        and not _is_linear(c)
        and not any(True for _ in c.parameters())
        and not isinstance(c, _PARAMETER_FREE_NOT_ACTIVATION)
    ]
    if activations:
        return "flat", activations
    return "flat", [full(name) for i, (name, c) in enumerate(children) if _is_linear(c) and i < last_linear]


def _submodule(root: nn.Module, path: str) -> nn.Module:
    return root.get_submodule(path) if path else root


class Model:
    """A frozen network plus everything needed to address it. See the module docstring."""

    def __init__(self, hf: nn.Module, tokenizer: Any = None, name: str | None = None):
        import nnsight

        self.hf = hf
        self.tokenizer = tokenizer
        self.name = name or type(hf).__name__
        self.config = getattr(hf, "config", None)
        self.is_hf = hasattr(hf, "config") and hasattr(hf, "main_input_name")
        self.is_lm = tokenizer is not None
        # A decoder-only generative LM (GPT-2, Llama, ...), as opposed to an encoder (BERT).
        can_generate = getattr(hf, "can_generate", None)
        self.is_causal_lm = bool(
            self.is_lm
            and callable(can_generate) and can_generate()
            and not getattr(self.config, "is_encoder_decoder", False)
        )
        self._fingerprint: str | None = None
        self._dims: dict[str, int] = {}
        self._layer_kind, self._layer_paths = _find_blocks(hf)
        if not self._layer_paths:
            raise InterventionError(
                f"found no layers in {type(hf).__name__}: expected a ModuleList of repeated blocks "
                "(a transformer) or a Sequential/ModuleList of Linear layers (an MLP)"
            )
        self._component_paths = self._resolve_components()
        # Plain NNsight even for language models: nnsight.LanguageModel re-collates a
        # batch (re-pads it to the left and derives its own position ids, and sets the
        # tokenizer to left padding), which would move the token indices a Batch resolved.
        import warnings

        with warnings.catch_warnings():
            # nnsight warns that BERT's `output` submodules move to `E_output`; envoy_at handles it.
            warnings.filterwarnings("ignore", message=".*submodule named.*")
            self.nn = nnsight.NNsight(hf)

    # ------------------------------------------------------------ structure
    def _resolve_components(self) -> dict[str, list[tuple[str, str]]]:
        """component -> per layer (module path, "output" | "input")."""
        out: dict[str, list[tuple[str, str]]] = {"block_output": [(p, "output") for p in self._layer_paths]}
        if self._layer_kind != "blocks":
            return out
        hidden = self.hidden_size_hint
        attn, mlp, head = [], [], []
        for path in self._layer_paths:
            block = _submodule(self.hf, path)
            children = list(block.named_children())
            a = next((n for n, c in children if _ATTN_NAME.search(n) and not _NOT_A_SUBLAYER.search(n)), None)
            m = next((n for n, c in children if _MLP_NAME.search(n) and not _NOT_A_SUBLAYER.search(n)), None)
            if m is None:
                # No MLP child (OPT, BERT): the last hidden-sized Linear outside attention.
                cands = [
                    n for n, c in block.named_modules()
                    if n and _linear_out_features(c) == hidden and not (a and (n == a or n.startswith(a + ".")))
                ]
                m = cands[-1] if cands else None
            h = None
            if a is not None:
                lin = [(n, c) for n, c in _submodule(block, a).named_modules() if n and _linear_out_features(c) == hidden]
                named = [n for n, _ in lin if _OUT_PROJ_NAME.match(n.split(".")[-1])]
                h = named[-1] if named else (lin[-1][0] if lin else None)
            attn.append(f"{path}.{a}" if a else None)
            mlp.append(f"{path}.{m}" if m else None)
            head.append(f"{path}.{a}.{h}" if (a and h) else None)
        if all(attn):
            out["attn_output"] = [(p, "output") for p in attn]
        if all(mlp):
            out["mlp_output"] = [(p, "output") for p in mlp]
        if all(head):
            out["head_output"] = [(p, "input") for p in head]
        return out

    @property
    def hidden_size_hint(self) -> int | None:
        for attr in ("hidden_size", "n_embd", "d_model", "dim"):
            v = getattr(self.config, attr, None)
            if isinstance(v, int):
                return v
        return None

    @property
    def n_layers(self) -> int:
        return len(self._layer_paths)

    @property
    def hidden_size(self) -> int:
        """Width of the residual stream (block_output); for an MLP, of its last hidden layer."""
        return self.site_dim(Site(self.n_layers - 1))

    @property
    def head_dim(self) -> int | None:
        hd = getattr(self.config, "head_dim", None)
        if isinstance(hd, int):
            return hd
        n = getattr(self.config, "num_attention_heads", None) or getattr(self.config, "n_head", None)
        h = self.hidden_size_hint
        return h // n if (n and h) else None

    @property
    def device(self) -> torch.device:
        p = next(self.hf.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        p = next(self.hf.parameters(), None)
        return p.dtype if p is not None else torch.float32

    def components(self) -> list[str]:
        return [c for c in COMPONENTS if c in self._component_paths]

    def sites(self, positions=("last",), components=None) -> list[Site]:
        comps = components or self.components()
        if not self.is_lm:
            positions = (None,)
        return [Site(layer, c, p) for c in comps for layer in range(self.n_layers) for p in positions]

    def check_site(self, site: Site) -> Site:
        if not isinstance(site, Site):
            raise InterventionError(f"expected a Site, got {site!r}")
        if site.component not in self._component_paths or not (-self.n_layers <= site.layer < self.n_layers):
            raise InterventionError(
                f"site {site.key} does not exist in {self.name}: valid layers are 0..{self.n_layers - 1}, "
                f"valid components are {self.components()}"
            )
        return site

    def module_path(self, site: Site) -> tuple[str, str]:
        """(module path, "output" | "input"): where the site's activation lives."""
        self.check_site(site)
        return self._component_paths[site.component][site.layer]

    def module_at(self, site: Site) -> nn.Module:
        return _submodule(self.hf, self.module_path(site)[0])

    def envoy_at(self, site: Site):
        """The nnsight Envoy of the site's module."""
        import inspect

        from nnsight.intervention.envoy import Envoy

        env = self.nn
        for part in filter(None, self.module_path(site)[0].split(".")):
            # A submodule named like an nnsight value (BERT's `output`) lives at `E_output`.
            if inspect.isdatadescriptor(getattr(Envoy, part, None)):
                part = Envoy.OVERLOAD_PREFIX + part
            env = getattr(env, part)
        return env

    # ------------------------------------------------------------ calling
    @property
    def input_name(self) -> str:
        return getattr(self.hf, "main_input_name", "input_ids" if self.is_lm else "inputs")

    def call_args(self, inputs: dict) -> tuple[tuple, dict]:
        """How to call the module on a Batch's inputs: HF models take keywords, plain modules one tensor."""
        if self.is_hf:
            return (), dict(inputs)
        return (inputs[self.input_name],), {}

    def forward(self, inputs: dict, **extra):
        args, kwargs = self.call_args(inputs)
        return self.hf(*args, **kwargs, **extra)

    def _dummy_inputs(self) -> dict:
        if self.is_lm:
            ids = torch.zeros(1, 2, dtype=torch.long, device=self.device)
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        size = getattr(self.config, "input_size", None)
        if size is None:
            first = next((m for m in self.hf.modules() if _is_linear(m)), None)
            size = first.in_features if isinstance(first, nn.Linear) else None
        if size is None:
            raise InterventionError(f"cannot tell the input width of {self.name}; give it an nn.Linear first layer")
        return {self.input_name: torch.zeros(1, size, device=self.device, dtype=self.dtype)}

    def site_dim(self, site: Site) -> int:
        """Width of the activation at a site (one probe forward, then cached)."""
        self.check_site(site)
        if not self._dims:
            handles = []
            for comp, paths in self._component_paths.items():
                for layer, (path, where) in enumerate(paths):
                    key = f"{comp}.{layer % self.n_layers}"

                    def grab(_m, args, output=None, key=key, where=where):
                        t = args[0] if where == "input" else output
                        t = t[0] if isinstance(t, tuple) else t
                        self._dims[key] = int(t.shape[-1])

                    mod = _submodule(self.hf, path)
                    handles.append(mod.register_forward_pre_hook(grab) if where == "input" else mod.register_forward_hook(grab))
            try:
                with torch.no_grad():
                    self.forward(self._dummy_inputs())
            finally:
                for h in handles:
                    h.remove()
        return self._dims[f"{site.component}.{site.layer % self.n_layers}"]

    # ------------------------------------------------------------ identity
    @property
    def revision(self) -> str | None:
        """The hub commit the weights were loaded from (None for a local directory or a module)."""
        return getattr(getattr(self.hf, "config", None), "_commit_hash", None)

    @property
    def fingerprint(self) -> str:
        """sha256 over parameter names, shapes, dtypes and bytes (computed once)."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for name, p in self.hf.named_parameters():
                t = p.detach().contiguous().cpu()
                h.update(f"{name}|{tuple(t.shape)}|{t.dtype}\n".encode())
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def __repr__(self) -> str:
        return f"Model({self.name!r}, layers={self.n_layers}, components={self.components()}, device={self.device})"
