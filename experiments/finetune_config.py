"""The finetune config: one dataclass, validated on construction, read from TOML."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from experiments.config import read_toml  # noqa: F401  (re-exported: compare reads its TOML with it)
from experiments.errors import ConfigError
from experiments.reft_artifact import REFT_METHODS, PositionSpec


PEFT_METHODS = ("lora", "prefix_tuning", "prompt_tuning")
METHODS = (*REFT_METHODS, *PEFT_METHODS, "full")
SCHEDULES = ("linear", "cosine", "constant", "constant_with_warmup")
COMPONENTS = ("block_output", "attn_output", "mlp_output")
# Models built from a config with random weights (no download): name -> (class, sizes).
CONFIG_MODELS = {
    "gpt2-tiny": ("gpt2", dict(n_layer=2, n_embd=64, n_head=4, n_positions=256)),
    "gpt2-small-shape": ("gpt2", dict(n_layer=12, n_embd=768, n_head=12, n_positions=512)),
    "llama-tiny": ("llama", dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)),
}
# Rule changes a finetune can ask of a built-in task: task -> allowed variant keys.
VARIANTS = {"price_tagging": ("lower_shift", "upper_shift", "ignore_lower")}


# ---- config
@dataclass
class FinetuneConfig:
    # "zoo:<task>", "config:<name>" (random weights, see CONFIG_MODELS), a local HF dir or a hub id.
    model: str
    task: str | None = None
    variant: dict | None = None  # e.g. {lower_shift = 2} for price_tagging
    data: str | None = None  # JSONL with "prompt" and "response" per line (instead of task)
    method: str = "loreft"
    layers: list[int] | str = "all"
    component: str = "block_output"
    rank: int = 4
    positions: str = "l1"  # first-n / last-n prompt tokens: "f1+l1", "l3", ...
    share_weights: bool = True  # one intervention per layer for all positions (tied), else one per f/l group
    dropout: float = 0.0
    lr: float = 4e-3
    weight_decay: float = 0.0
    schedule: str = "linear"
    warmup_ratio: float = 0.0
    grad_accum: int = 1
    epochs: int = 1
    steps: int | None = None  # optimizer steps; overrides epochs
    batch_size: int = 16
    bf16: bool = False  # GPU only
    eval_every: int = 0  # optimizer steps between evaluations; 0 = only at the end
    seed: int = 0
    init_from: str | None = None  # a Subspace artifact directory (ReFT methods)
    freeze_rotation: bool = False
    n_train: int = 1000  # task examples
    n_eval: int = 200
    eval_fraction: float = 0.2  # JSONL pairs held out for evaluation
    max_length: int = 256
    # peft options
    lora_r: int = 4
    lora_alpha: int = 8
    lora_dropout: float = 0.0
    lora_target_modules: list[str] | None = None  # default: peft's own choice for the architecture
    num_virtual_tokens: int = 4
    # where and how
    name: str | None = None
    device: str = "auto"
    device_map: str | None = None  # "auto" spreads a large model over GPUs (accelerate)
    model_seed: int = 0  # zoo model seed, or the seed of a config: model's random weights

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        def need(cond: bool, name: str, msg: str):
            if not cond:
                raise ConfigError(f"finetune config field {name!r}: {msg}")

        need(isinstance(self.model, str) and self.model.strip() != "", "model",
             "give 'zoo:<task>', 'config:<name>' (" + ", ".join(CONFIG_MODELS) + "), a local model directory or a hub id")
        if self.model.startswith("config:"):
            need(self.model[7:] in CONFIG_MODELS, "model",
                 f"unknown config model {self.model!r}; allowed values: {['config:' + k for k in CONFIG_MODELS]}")
        need((self.task is None) != (self.data is None), "task",
             "give exactly one of 'task' (a built-in task) or 'data' (a JSONL file of prompt/response pairs)")
        need(self.method in METHODS, "method", f"got {self.method!r}; allowed values: {list(METHODS)}")
        need(self.component in COMPONENTS, "component", f"got {self.component!r}; allowed values: {list(COMPONENTS)}")
        if isinstance(self.layers, str):
            need(self.layers == "all", "layers", f"got {self.layers!r}; use \"all\" or a list of layer indices")
        else:
            need(isinstance(self.layers, list) and self.layers and all(_is_int(x) for x in self.layers), "layers",
                 f"got {self.layers!r}; use \"all\" or a non-empty list of layer indices")
        PositionSpecField(self.positions)
        for name in ("rank", "grad_accum", "epochs", "batch_size", "n_train", "n_eval", "max_length",
                     "lora_r", "lora_alpha", "num_virtual_tokens"):
            v = getattr(self, name)
            need(_is_int(v) and v >= 1, name, f"got {v!r}; use a positive integer")
        need(self.steps is None or (_is_int(self.steps) and self.steps >= 1), "steps",
             f"got {self.steps!r}; use a positive integer, or leave it out to train for 'epochs'")
        need(_is_int(self.eval_every) and self.eval_every >= 0, "eval_every",
             f"got {self.eval_every!r}; use 0 (evaluate at the end only) or a positive step count")
        for name in ("lr",):
            v = getattr(self, name)
            need(_is_num(v) and v > 0, name, f"got {v!r}; use a positive number such as 4e-3")
        for name in ("dropout", "lora_dropout", "warmup_ratio", "weight_decay"):
            v = getattr(self, name)
            need(_is_num(v) and 0 <= v < 1, name, f"got {v!r}; use a number in [0, 1)")
        need(_is_num(self.eval_fraction) and 0 < self.eval_fraction < 1, "eval_fraction",
             f"got {self.eval_fraction!r}; use a number in (0, 1)")
        need(self.schedule in SCHEDULES, "schedule", f"got {self.schedule!r}; allowed values: {list(SCHEDULES)}")
        for name in ("share_weights", "bf16", "freeze_rotation"):
            need(isinstance(getattr(self, name), bool), name, f"got {getattr(self, name)!r}; use true or false")
        need(_is_int(self.seed) and _is_int(self.model_seed), "seed", "seeds are integers")
        need(self.device_map in (None, "auto"), "device_map", f"got {self.device_map!r}; allowed values: ['auto']")
        need(isinstance(self.device, str), "device", "use 'auto', 'cpu' or 'cuda'")
        if self.init_from is not None or self.freeze_rotation:
            need(self.method in REFT_METHODS, "init_from",
                 f"init_from / freeze_rotation start a ReFT intervention from a subspace; use method 'loreft'"
                 f" (got {self.method!r})")
        if self.freeze_rotation:
            need(self.method == "loreft", "freeze_rotation", "only LoReFT has a rotation to freeze; use method 'loreft'")
        need(self.name is None or (isinstance(self.name, str) and _safe_name(self.name)), "name",
             f"got {self.name!r}; use letters, digits, '-', '_' or '.'")
        if self.task is not None:
            from causal.tasks import TASK_NAMES

            need(self.task in TASK_NAMES, "task", f"unknown task {self.task!r}; allowed values: {TASK_NAMES}")
        if self.variant is not None:
            need(self.task is not None, "variant", "a variant changes a built-in task; set 'task' too")
            allowed = VARIANTS.get(self.task, ())
            need(isinstance(self.variant, dict) and bool(self.variant), "variant",
                 f"use a table such as {{{allowed[0] if allowed else 'key'} = 2}}")
            for k, v in self.variant.items():
                need(k in allowed, "variant",
                     f"task {self.task!r} has no variant {k!r}; allowed values: {list(allowed) or 'none'}")
                need(_is_int(v), "variant", f"{k} = {v!r}; use an integer")

    # ---- identity
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        d = self.to_dict()
        d.pop("name")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def run_name(self) -> str:
        what = self.task or Path(self.data).stem
        return self.name or f"finetune-{what}-{self.method}-{self.hash()}"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FinetuneConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown finetune config field(s) {unknown}; allowed fields: {sorted(known)}")
        if "model" not in d:
            raise ConfigError("finetune config field 'model' is missing; name the model to finetune")
        try:
            return cls(**d)
        except TypeError as e:
            raise ConfigError(f"bad finetune config: {e}") from None


def PositionSpecField(text) -> PositionSpec:
    try:
        return PositionSpec.parse(text)
    except ConfigError as e:
        raise ConfigError(f"finetune config field 'positions': {e}") from None


def load_finetune_config(path: str | Path) -> FinetuneConfig:
    return FinetuneConfig.from_dict(read_toml(path, "finetune"))


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _safe_name(s: str) -> bool:
    return bool(s) and all(ch.isalnum() or ch in "-_." for ch in s) and not s.startswith(".")
