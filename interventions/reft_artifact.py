"""Trained ReFT interventions as one object, and as an artifact directory.

A `ReftInterventions` holds every LoReFT/DiReFT module of a finetune: one per layer when
weights are tied across positions, one per layer and position group ("f" = first-n prompt
tokens, "l" = last-n) when untied, as in the ReFT paper. It knows which prompt tokens each
module acts on and attaches them to a model (through interventions.apply.attach) for the
prompt forward, so HF `generate` works with them.

Artifact directory (never pickle):
  config.json                 structure + provenance (model name and fingerprint, task, ...)
  interventions.safetensors   "<unit key>.<parameter>" -> tensor, from each module's state dict
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from causal.io import write_dir_atomic
from interventions.hub import HubArtifact, iia_text
from interventions.errors import InterventionError

REFT_METHODS = ("loreft", "direft")
ARTIFACT_FORMAT = "dii-reft/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "interventions.safetensors"


# ------------------------------------------------------------------ positions
@dataclass(frozen=True)
class PositionSpec:
    """ "f1+l1" -> first 1 and last 1 prompt tokens; "l3" -> last 3; "f2" -> first 2."""

    first: int
    last: int

    @classmethod
    def parse(cls, text: str) -> "PositionSpec":
        if not isinstance(text, str) or not re.fullmatch(r"(f\d+)?(\+?l\d+)?", text.strip()) or not text.strip():
            raise InterventionError(f"positions {text!r} is not understood; write first-n and/or last-n prompt tokens "
                              f"as 'f<n>', 'l<n>' or 'f<n>+l<n>' (e.g. 'f1+l1')")
        first = last = 0
        for part in text.strip().split("+"):
            if part.startswith("f"):
                first = int(part[1:])
            elif part.startswith("l"):
                last = int(part[1:])
        if first + last == 0:
            raise InterventionError(f"positions {text!r} selects no token; use n >= 1, e.g. 'l1'")
        return cls(first, last)

    @property
    def text(self) -> str:
        return "+".join(p for p in ((f"f{self.first}" if self.first else ""), (f"l{self.last}" if self.last else "")) if p)

    @property
    def groups(self) -> list[tuple[str, int]]:
        return [(g, n) for g, n in (("f", self.first), ("l", self.last)) if n > 0]

    def group_positions(self, group: str, prompt_lengths: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """LongTensor[B, n] of absolute token indices. `offsets` is the left padding of each row.
        A prompt shorter than n repeats its edge token (the intervention then acts on it once)."""
        n = dict(self.groups)[group]
        ar = torch.arange(n, device=prompt_lengths.device)
        lengths = prompt_lengths.unsqueeze(1)
        if group == "f":
            rel = torch.minimum(ar.unsqueeze(0).expand(len(prompt_lengths), n), lengths - 1)
        else:
            rel = torch.clamp(lengths - n + ar.unsqueeze(0), min=0)
        return rel + offsets.unsqueeze(1)


# ------------------------------------------------------------------ the interventions
def make_reft_module(method: str, d: int, rank: int, dropout: float = 0.0) -> nn.Module:
    from interventions.reft import DiReFT, LoReFT

    if method == "loreft":
        return LoReFT(d, rank, dropout=dropout)
    if method == "direft":
        return DiReFT(d, rank, dropout=dropout) if "dropout" in DiReFT.__init__.__code__.co_varnames else DiReFT(d, rank)
    raise InterventionError(f"method {method!r} is not a ReFT method; allowed values: {list(REFT_METHODS)}")


def reft_param_formula(method: str, d: int, rank: int, frozen_rotation: bool = False) -> int:
    """Trainable parameters of one intervention: LoReFT R (r x d) + W (r x d) + b (r) = 2dr + r;
    DiReFT W1 (r x d) + b (r) + W2 (r x d) = 2dr + r. A frozen LoReFT rotation leaves dr + r."""
    if method == "loreft" and frozen_rotation:
        return d * rank + rank
    return 2 * d * rank + rank


class ReftInterventions(HubArtifact, nn.Module):
    """All ReFT modules of one finetune; `units` keys look like 'L3:block_output:f'."""

    def __init__(self, method: str, d: int, rank: int, layers: list[int], positions: str,
                 share_weights: bool = True, component: str = "block_output", dropout: float = 0.0,
                 provenance: dict | None = None):
        super().__init__()
        if method not in REFT_METHODS:
            raise InterventionError(f"method {method!r} is not a ReFT method; allowed values: {list(REFT_METHODS)}")
        self.method, self.d, self.rank = method, int(d), int(rank)
        self.layers = [int(l) for l in layers]
        self.spec = PositionSpec.parse(positions)
        self.share_weights = bool(share_weights)
        self.component = component
        self.dropout = float(dropout)
        self.provenance: dict[str, Any] = dict(provenance or {})
        groups = ["all"] if self.share_weights else [g for g, _ in self.spec.groups]
        self.units = nn.ModuleDict({
            self.unit_key(layer, g): make_reft_module(method, self.d, self.rank, self.dropout)
            for layer in self.layers for g in groups
        })

    def unit_key(self, layer: int, group: str) -> str:
        return f"L{layer}:{self.component}:{group}"  # nn.ModuleDict keys cannot hold "."

    @staticmethod
    def parse_key(key: str) -> tuple[int, str, str]:
        layer, component, group = key.split(":")
        return int(layer[1:]), component, group

    # ---- counting
    @property
    def frozen_rotation(self) -> bool:
        return any(not p.requires_grad for p in self.parameters())

    def formula_count(self) -> int:
        return len(self.units) * reft_param_formula(self.method, self.d, self.rank, self.frozen_rotation)

    def trainable_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # ---- where they act
    def positions_for(self, prompt_lengths: torch.Tensor, offsets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """unit key -> LongTensor[B, n] of token indices the unit acts on."""
        if offsets is None:
            offsets = torch.zeros_like(prompt_lengths)
        per_group = {g: self.spec.group_positions(g, prompt_lengths, offsets) for g, _ in self.spec.groups}
        per_group["all"] = torch.cat([per_group[g] for g, _ in self.spec.groups], dim=1)
        return {key: per_group[self.parse_key(key)[2]] for key in self.units}

    @contextmanager
    def attached(self, model, prompt_lengths: torch.Tensor, offsets: torch.Tensor | None = None) -> Iterator[None]:
        """Apply every unit at its layer and prompt positions during the model's forwards
        (the prompt forward only, under generate)."""
        from interventions.attach import attach
        from interventions.model import Site

        positions = self.positions_for(prompt_lengths.to(model.device), None if offsets is None else offsets.to(model.device))
        specs = []
        for key, module in self.units.items():
            layer, component, _ = self.parse_key(key)
            specs.append((Site(layer, component, None), module, positions[key]))
        with attach(model, specs):
            yield

    # ---- artifact
    def structure(self) -> dict:
        return {"method": self.method, "hidden_size": self.d, "rank": self.rank, "layers": self.layers,
                "positions": self.spec.text, "share_weights": self.share_weights, "component": self.component,
                "dropout": self.dropout, "units": list(self.units)}

    # ---- the Hub's conventions (interventions/hub.py)
    def card_fields(self) -> dict:
        prov = self.provenance or {}
        return {
            "title": f"{self.method} intervention, rank {self.rank}, layers {self.layers}",
            "summary": (f"A {self.method} intervention (rank {self.rank}) on `{self.component}` at layers {self.layers}, "
                        f"positions `{self.spec.text}`: a handful of parameters finetuning a frozen model."),
            "tags": ["reft", self.method],
            "base_model": prov.get("model_name"), "base_model_revision": prov.get("base_model_revision"),
            "model_fingerprint": prov.get("model_fingerprint"), "task": prov.get("task"),
            "hypothesis": prov.get("hypothesis"), "library_version": prov.get("library_version", "unknown"),
            "what": {"method": self.method, "rank": self.rank, "layers": self.layers, "positions": self.spec.text,
                     "component": self.component, "share_weights": self.share_weights, "hidden size": self.d,
                     "trainable parameters": self.trainable_count()},
            "iia_text": iia_text(prov.get("iia"), prov.get("iia_low"), prov.get("iia_high"), prov.get("n_test"),
                                 prov.get("floor")) if prov.get("iia") is not None else
            (f"eval accuracy {prov['eval_accuracy']:.3f}" if prov.get("eval_accuracy") is not None else "not recorded"),
            "training_config": prov.get("config") or {},
            "load_lines": ["from interventions import load_model",
                           "from interventions.reft_artifact import ReftInterventions, generate",
                           f"model = load_model({prov.get('model_name')!r})",
                           "reft = ReftInterventions.from_pretrained(REPO_OR_DIR, model=model)"],
        }

    @classmethod
    def load_artifact(cls, directory, model=None, allow_fingerprint_mismatch: bool = False) -> "ReftInterventions":
        return load_reft(directory, model=model, allow_fingerprint_mismatch=allow_fingerprint_mismatch)

    def save(self, directory: str | Path) -> Path:
        """config.json + interventions.safetensors, written into a temporary sibling
        directory that is renamed into place (a reader never sees half an artifact)."""
        return write_dir_atomic(Path(directory), self.write_into)

    def write_into(self, directory: Path) -> None:
        """The artifact's files, into a fresh folder (the caller publishes it atomically)."""
        from interventions.artifact import _sha256
        from interventions.io import atomic_save_safetensors, atomic_write_json

        tensors = {f"{key}.{name}": t.detach().to("cpu", torch.float32).contiguous()
                   for key, module in self.units.items() for name, t in module.state_dict().items()}
        config = {"format": ARTIFACT_FORMAT, **self.structure(), "provenance": self.provenance,
                  "frozen": [f"{key}.{n}" for key, m in self.units.items() for n, p in m.named_parameters()
                             if not p.requires_grad]}
        atomic_save_safetensors(Path(directory) / WEIGHTS_FILE, tensors)
        atomic_write_json(Path(directory) / CONFIG_FILE, {**config, "weights_sha256": _sha256(Path(directory) / WEIGHTS_FILE)})


# The fields a ReFT artifact's config.json must hold, and their types.
REQUIRED_FIELDS = {"method": str, "hidden_size": int, "rank": int, "layers": list, "positions": str,
                   "share_weights": bool, "component": str, "provenance": dict, "weights_sha256": str}


def load_reft(directory: str | Path, model=None, allow_fingerprint_mismatch: bool = False) -> ReftInterventions:
    """Load a ReFT artifact, checked as strictly as a Subspace: every field present and typed,
    the weights' sha256, finite weights, and with `model` the model's fingerprint (refused
    when it differs unless allow_fingerprint_mismatch) and width; then move it to the model's
    device."""
    from interventions.artifact import _sha256
    from interventions.io import load_json, load_safetensors

    directory = Path(directory)
    fix = "pass a directory written by `dii finetune` or finetune(out_dir=...), or train it again"
    config = load_json(directory / CONFIG_FILE, "ReFT artifact config", fix)
    if not isinstance(config, dict) or config.get("format") != ARTIFACT_FORMAT:
        found = config.get("format") if isinstance(config, dict) else f"a JSON {type(config).__name__}"
        raise InterventionError(f"{directory} is not a ReFT artifact (format {found!r}, expected "
                          f"{ARTIFACT_FORMAT!r}); pass a directory written by `dii finetune` or finetune(out_dir=...)")
    for field, kind in REQUIRED_FIELDS.items():
        if field not in config:
            raise InterventionError(f"{directory / CONFIG_FILE} has no {field!r}; the artifact is incomplete: {fix}")
        if not isinstance(config[field], kind) or (kind is int and isinstance(config[field], bool)):
            raise InterventionError(f"{directory / CONFIG_FILE}: {field!r} is {config[field]!r}, not a {kind.__name__}; {fix}")
    prov = config["provenance"]
    fp = prov.get("model_fingerprint")
    if not isinstance(fp, str) or not fp:
        raise InterventionError(f"{directory / CONFIG_FILE} has no provenance.model_fingerprint, so the model it was "
                          f"trained on cannot be checked; {fix}")
    weights = directory / WEIGHTS_FILE
    if weights.is_file() and _sha256(weights) != config["weights_sha256"]:  # a missing file: load_safetensors says so
        raise InterventionError(f"{directory / WEIGHTS_FILE} does not match its config (sha256 differs): the file was "
                          f"changed or corrupted; {fix}")
    if model is not None:
        if getattr(model, "fingerprint", None) and fp != model.fingerprint and not allow_fingerprint_mismatch:
            raise InterventionError(f"the ReFT artifact in {directory} was trained on model {prov.get('model_name')!r} "
                              f"(weights {fp[:12]}), not on {model.name!r} (weights {model.fingerprint[:12]}); "
                              f"load it onto the model it was trained on, or pass allow_fingerprint_mismatch=True "
                              "to apply it to different weights of the same shape on purpose")
        if model.hidden_size != config["hidden_size"]:
            raise InterventionError(f"the ReFT artifact in {directory} has hidden size {config['hidden_size']}, the model "
                              f"{model.hidden_size}; load it onto the model it was trained on")
    reft = ReftInterventions(config["method"], config["hidden_size"], config["rank"], config["layers"],
                             config["positions"], config["share_weights"], config["component"],
                             config.get("dropout", 0.0), provenance=prov)
    tensors = load_safetensors(directory / WEIGHTS_FILE, "ReFT artifact weights", fix)
    for name, t in tensors.items():
        if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
            raise InterventionError(f"{directory / WEIGHTS_FILE}: {name} is not finite floating point; {fix}")
    for key, module in reft.units.items():
        own = {name[len(key) + 1:]: t for name, t in tensors.items() if name.startswith(key + ".")}
        try:
            module.load_state_dict(own, strict=True)
        except RuntimeError as e:
            raise InterventionError(f"the ReFT artifact in {directory} does not match its config.json ({e}); "
                              f"it is corrupt: export it again") from None
    frozen = set(config.get("frozen", []))
    for key, module in reft.units.items():
        for n, p in module.named_parameters():
            p.requires_grad_(f"{key}.{n}" not in frozen)
    reft.eval()
    if model is not None:
        reft.to(model.device)
    return reft


# ------------------------------------------------------------------ use
def encode_prompts(model, prompts: list[str], padding_side: str = "left") -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Tokenized, padded prompts (no special tokens added) + per-row prompt length and left offset."""
    tok = model.tokenizer
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if any(len(x) == 0 for x in ids):
        raise InterventionError("a prompt is empty after tokenization; give every prompt at least one token")
    width = max(len(x) for x in ids)
    pad = pad_token_id(tok)
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    offsets = torch.zeros(len(ids), dtype=torch.long)
    for i, x in enumerate(ids):
        off = width - len(x) if padding_side == "left" else 0
        input_ids[i, off:off + len(x)] = torch.tensor(x)
        mask[i, off:off + len(x)] = 1
        offsets[i] = off
    lengths = torch.tensor([len(x) for x in ids], dtype=torch.long)
    return {"input_ids": input_ids.to(model.device), "attention_mask": mask.to(model.device)}, lengths, offsets


def pad_token_id(tokenizer) -> int:
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if tid is not None:
            return int(tid)
    return 0


@torch.no_grad()
def generate(model, reft: ReftInterventions | None, prompts: list[str], max_new_tokens: int = 16,
             **generate_kwargs) -> list[str]:
    """Greedy continuations of `prompts` with the interventions on the prompt tokens
    (left padding, so every row's last prompt token is at the same place)."""
    from causal.errors import require_count

    require_count(max_new_tokens, "max_new_tokens", 1, InterventionError)
    batch, lengths, offsets = encode_prompts(model, prompts, padding_side="left")
    kwargs = {"max_new_tokens": max_new_tokens, "do_sample": False, "pad_token_id": pad_token_id(model.tokenizer),
              **generate_kwargs}
    if reft is None:
        out = model.hf.generate(**batch, **kwargs)
    else:
        with reft.attached(model, lengths, offsets):
            out = model.hf.generate(**batch, **kwargs)
    new = out[:, batch["input_ids"].shape[1]:]
    return [model.tokenizer.decode(row, skip_special_tokens=True) for row in new]


def read_config(directory: str | Path) -> dict:
    p = Path(directory) / CONFIG_FILE
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise InterventionError(f"{p} is missing; pass a ReFT artifact directory") from None
