"""Finetuning a frozen model with LoReFT/DiReFT (ours) or, for comparison, with the peft
library's LoRA / prefix tuning / prompt tuning, or all weights ("full").

Data: a built-in task (or a variant of it with a changed rule) whose answer is one token,
or a JSONL file of {"prompt": ..., "response": ...} pairs (the ReFT paper's instruction
setting). Loss: cross-entropy on the response tokens only, normalised by the number of
response tokens in the whole optimizer step (across gradient accumulation and processes),
so 1 process and N processes under torchrun compute the same update.

ReFT initialisation: random, or from a Subspace artifact (`init_from`): R starts from the
DAS directions (rank above k completed with orthogonal directions, below k the first r),
optionally frozen.

    python -m experiments.finetune CONFIG.toml [--out DIR]       # one process
    torchrun --nproc_per_node 2 -m experiments.finetune CONFIG.toml  # DDP (gloo on CPU)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import threading
import time
import tomllib
import weakref
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from experiments.errors import ConfigError
from experiments.reft_artifact import (
    REFT_METHODS,
    PositionSpec,
    ReftInterventions,
    pad_token_id,
    write_dir_atomic,
)

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


# ------------------------------------------------------------------ config
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


def read_toml(path: str | Path, table: str) -> dict:
    """A flat TOML file, or one whose only table is [table]. Relative `data`/`init_from`
    paths are resolved against the config file's folder when they exist there."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist; pass the path of a .toml config "
                          f"(examples in experiments/configs/)")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {e}") from None
    if set(data) == {table} and isinstance(data[table], dict):
        data = data[table]
    for key in ("data", "init_from"):
        v = data.get(key)
        if isinstance(v, str) and not Path(v).is_absolute() and not Path(v).exists() and (path.parent / v).exists():
            data[key] = str(path.parent / v)
    return data


def load_finetune_config(path: str | Path) -> FinetuneConfig:
    return FinetuneConfig.from_dict(read_toml(path, "finetune"))


# ------------------------------------------------------------------ data
@dataclass
class Example:
    prompt: str
    response: str


def task_variant(task, variant: dict | None):
    """The task with a changed rule, as a new Task whose main hypothesis computes it."""
    if not variant:
        return task
    if task.name != "price_tagging":
        raise ConfigError(f"task {task.name!r} has no variants; tasks with variants: {list(VARIANTS)}")
    from causal.model import CausalModel

    lo, hi = int(variant.get("lower_shift", 0)), int(variant.get("upper_shift", 0))
    ignore_lower = bool(variant.get("ignore_lower", 0))  # left := True: only the upper bound counts
    base = task.causal_model
    left_text = "True" if ignore_lower else f"X >= L {lo:+d}"
    shifted = CausalModel(
        {v: list(vals) for v, vals in base.variables.items()},
        {v: list(ps) for v, ps in base.parents.items()},
        {**base.mechanisms,
         "left": (lambda X, L: True) if ignore_lower else (lambda X, L: X >= L + lo),
         "right": lambda X, U: X <= U + hi},
        name=f"boundaries_changed(left: {left_text}, right: X <= U {hi:+d})",
        descriptions={**base.descriptions, "left": left_text, "right": f"X <= U {hi:+d}"},
    )
    tag = ",".join(f"{k}={v}" for k, v in sorted(variant.items()))
    return dataclasses.replace(
        task, name=f"{task.name}[{tag}]",
        description=f"{task.description}; changed rule: {left_text} and X <= U {hi:+d}",
        hypotheses={shifted.name: shifted}, default_hypothesis=shifted.name)


def task_examples(config: FinetuneConfig) -> tuple[list[Example], list[Example], Any]:
    from causal.tasks import get_task

    task = task_variant(get_task(config.task), config.variant)
    if task.input_kind != "tokens":
        raise ConfigError(f"task {config.task!r} renders vectors, not prompts; finetune a language model on a "
                          f"tokens task (e.g. 'price_tagging') or give a JSONL file as 'data'")

    def examples(n: int, seed: int) -> list[Example]:
        return [Example(task.render(x), task.answer(y)) for x, y in task.factual_data(n, seed=seed)]

    return examples(config.n_train, 7919 * config.seed + 1), examples(config.n_eval, 7919 * config.seed + 2), task


def read_jsonl_pairs(path: str | Path) -> list[Example]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data file {str(path)!r} does not exist; give a JSONL file with one "
                          f"{{\"prompt\": ..., \"response\": ...}} object per line")
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{i} is not valid JSON ({e}); fix that line") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not isinstance(row.get("response"), str):
            raise ConfigError(f"{path}:{i} needs string fields 'prompt' and 'response'")
        out.append(Example(row["prompt"], row["response"]))
    if len(out) < 2:
        raise ConfigError(f"{path} holds {len(out)} prompt/response pairs; give at least 2 (one is held out)")
    return out


def jsonl_examples(config: FinetuneConfig) -> tuple[list[Example], list[Example]]:
    pairs = read_jsonl_pairs(config.data)
    order = list(range(len(pairs)))
    random.Random(config.seed).shuffle(order)
    n_eval = max(1, round(config.eval_fraction * len(pairs)))
    return [pairs[i] for i in order[n_eval:]], [pairs[i] for i in order[:n_eval]]


@dataclass
class Encoded:
    """Right-padded prompt+response ids; labels are -100 outside the response."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    prompt_lengths: torch.Tensor

    def rows(self, idx) -> "Encoded":
        return Encoded(self.input_ids[idx], self.attention_mask[idx], self.labels[idx], self.prompt_lengths[idx])

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_examples(tokenizer, examples: list[Example], max_length: int, add_eos: bool) -> Encoded:
    rows, lengths = [], []
    for ex in examples:
        p = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"]
        r = tokenizer(ex.response, add_special_tokens=False)["input_ids"]
        if add_eos and tokenizer.eos_token_id is not None:
            r = r + [tokenizer.eos_token_id]
        if not p or not r:
            raise ConfigError(f"an example has an empty prompt or response after tokenization: {ex.prompt!r} -> "
                              f"{ex.response!r}; give both some text")
        ids = (p + r)[:max_length]
        if len(p) >= max_length:
            raise ConfigError(f"a prompt is {len(p)} tokens, over max_length = {max_length}; raise max_length")
        rows.append((ids, len(p)))
    width = max(len(ids) for ids, _ in rows)
    pad = pad_token_id(tokenizer)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (ids, p) in enumerate(rows):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        mask[i, :len(ids)] = 1
        labels[i, p:len(ids)] = torch.tensor(ids[p:])
        lengths.append(p)
    return Encoded(input_ids, mask, labels, torch.tensor(lengths, dtype=torch.long))


# ------------------------------------------------------------------ model
def resolve_model_path(config: FinetuneConfig, vocabulary: list[str]) -> str:
    if config.model.startswith("zoo:"):
        from experiments import zoo

        return str(zoo.get_model(config.model[4:], seed=config.model_seed, progress=False))
    if config.model.startswith("config:"):
        return str(config_model_dir(config.model[7:], vocabulary, config.model_seed))
    return config.model


def config_model_dir(name: str, vocabulary: list[str], seed: int = 0) -> Path:
    """A randomly initialised model of a named shape with a word-level tokenizer over
    `vocabulary` (the zoo's), saved once under $DII_CACHE/config_models/."""
    import transformers

    from experiments import zoo

    kind, sizes = CONFIG_MODELS[name]
    words = sorted({w for text in vocabulary for w in str(text).split()})
    key = hashlib.sha256(json.dumps([name, sizes, words, seed]).encode()).hexdigest()[:12]
    final = zoo.cache_root().parent / "config_models" / f"{name}-seed{seed}-{key}"
    if (final / "config.json").is_file():
        return final
    tokenizer = zoo.build_tokenizer(words)
    ids = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(**sizes, **ids, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    else:
        cfg = transformers.LlamaConfig(**sizes, **ids)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(cfg)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    if not final.exists():
        try:
            write_dir_atomic(final, write)
        except OSError:  # another process published it first
            if not (final / "config.json").is_file():
                raise
    return final


def words_of(examples: list[Example]) -> list[str]:
    return [t for ex in examples for t in (ex.prompt, ex.response)]


def load_for_finetune(config: FinetuneConfig, path: str, device: str):
    from interventions.model import load_model

    dtype = torch.bfloat16 if (config.bf16 and config.method != "full") else None  # full: fp32 under autocast
    if config.device_map == "auto":
        from experiments.search import _load_dispatched  # accelerate's dispatch, shared with the search

        model = _load_dispatched(path, dtype)
    else:
        model = load_model(path, device=device, dtype=dtype)
    if not getattr(model, "is_lm", True) or model.tokenizer is None:
        raise ConfigError(f"model {config.model!r} is not a language model with a tokenizer; finetuning needs one "
                          f"(use 'zoo:price_tagging', 'config:gpt2-tiny' or a local causal LM directory)")
    return model


# ------------------------------------------------------------------ methods
class Method:
    """What trains and how a batch runs through the model, one class per family."""

    name: str
    params: list[nn.Parameter]

    def logits(self, batch: Encoded) -> torch.Tensor:  # [B, T, V] aligned with batch.input_ids
        return self.forward(batch).logits

    def forward(self, batch: Encoded):
        """The model's output for the batch (with this method's edits applied)."""
        raise NotImplementedError

    def loss_terms(self, batch: Encoded) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What training and evaluation need: summed response-token CE, correct tokens per row,
        response tokens per row. The LM head runs on the response tokens only."""
        return response_loss_terms(self.model.hf, lambda: self.forward(batch), batch.labels)

    def trainable_count(self) -> int:
        return sum(p.numel() for p in self.params)

    def formula_count(self) -> int:
        raise NotImplementedError

    def formula_text(self) -> str:
        raise NotImplementedError

    def train(self) -> None: ...

    def eval(self) -> None: ...


class ReftMethod(Method):
    def __init__(self, model, config: FinetuneConfig, layers: list[int], provenance: dict):
        self.model, self.name = model, config.method
        torch.manual_seed(config.seed)
        self.reft = ReftInterventions(config.method, model.hidden_size, config.rank, layers, config.positions,
                                      config.share_weights, config.component, config.dropout, provenance)
        if config.init_from is not None:
            init_from_subspace(self.reft, config.init_from, model, config.freeze_rotation)
        self.reft.to(model.device)
        self.params = [p for p in self.reft.parameters() if p.requires_grad]

    def forward(self, batch: Encoded):
        with self.reft.attached(self.model, batch.prompt_lengths):
            return self.model.hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask)

    def formula_count(self) -> int:
        return self.reft.formula_count()

    def formula_text(self) -> str:
        per = "dr + r" if self.reft.frozen_rotation else "2dr + r"
        return (f"{len(self.reft.units)} interventions x ({per}) with d={self.reft.d}, r={self.reft.rank}")

    def train(self) -> None:
        self.reft.train()

    def eval(self) -> None:
        self.reft.eval()


def init_from_subspace(reft: ReftInterventions, directory: str, model, freeze: bool) -> None:
    """Every LoReFT unit starts R from the subspace's directions."""
    from interventions.artifact import Subspace
    from interventions.reft import LoReFT

    if reft.method != "loreft":
        raise ConfigError("init_from needs method 'loreft' (DiReFT has no rotation to start from)")
    sub = Subspace.load(directory, model=model)
    rotation = sub.rotation.detach().float().cpu()
    for key in list(reft.units):
        old = reft.units[key]
        new = LoReFT.from_rotation(rotation, r=reft.rank, dropout=reft.dropout)
        if freeze:
            new.freeze_rotation()
        reft.units[key] = new
        del old
    reft.provenance["init_from"] = {"path": str(directory), "k": int(rotation.shape[0]), "site": sub.site,
                                    "variables": list(sub.variables), "frozen": bool(freeze)}


class PeftMethod(Method):
    def __init__(self, model, config: FinetuneConfig):
        from peft import (LoraConfig, PrefixTuningConfig, PromptTuningConfig, TaskType,
                          get_peft_model)

        self.model, self.name = model, config.method
        torch.manual_seed(config.seed)
        if config.method == "lora":
            target = config.lora_target_modules
            if target is None and getattr(model.hf.config, "model_type", "") == "gpt2":
                target = ["c_attn"]
            peft_config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=config.lora_r, lora_alpha=config.lora_alpha,
                                     lora_dropout=config.lora_dropout, target_modules=target,
                                     fan_in_fan_out=getattr(model.hf.config, "model_type", "") == "gpt2")
        elif config.method == "prefix_tuning":
            peft_config = PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=config.num_virtual_tokens)
        else:
            peft_config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=config.num_virtual_tokens)
        try:
            self.peft_model = get_peft_model(model.hf, peft_config)
        except ValueError as e:
            raise ConfigError(f"peft cannot apply {config.method} to this model ({e}); for LoRA set "
                              f"lora_target_modules to the names of its linear layers") from None
        self.peft_model.to(model.device)
        self.params = [p for p in self.peft_model.parameters() if p.requires_grad]

    def forward(self, batch: Encoded):
        return self.peft_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)

    def logits(self, batch: Encoded) -> torch.Tensor:
        # prompt tuning prepends its virtual tokens to the logits: keep the real positions
        return self.forward(batch).logits[:, -batch.input_ids.shape[1]:]

    def formula_count(self) -> int:
        return int(self.peft_model.get_nb_trainable_parameters()[0])

    def train(self) -> None:
        # only the adapter's own dropout trains; the base model's stays off, as for ReFT
        for name, module in self.peft_model.named_modules():
            if "lora_dropout" in name:
                module.train()

    def eval(self) -> None:
        self.peft_model.eval()

    def formula_text(self) -> str:
        return "peft get_nb_trainable_parameters()"


class FullMethod(Method):
    def __init__(self, model, config: FinetuneConfig):
        self.model, self.name = model, "full"
        self.autocast = config.bf16
        for p in model.hf.parameters():
            p.requires_grad_(True)
        self.params = [p for p in model.hf.parameters() if p.requires_grad]

    def forward(self, batch: Encoded):
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast else nullcontext()
        with ctx:
            return self.model.hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask)

    def formula_count(self) -> int:
        return sum(p.numel() for p in self.model.hf.parameters())

    def formula_text(self) -> str:
        return "all model weights"


# ------------------------------------------------------------------ result
@dataclass
class FinetuneResult:
    method: str
    loss_curve: list[float]  # training loss per optimizer step
    eval_curve: list[dict]  # {"step", "loss", "accuracy", "token_accuracy"} per evaluation
    final_accuracy: float  # share of eval examples whose whole response is predicted (teacher-forced argmax)
    final_loss: float  # eval cross-entropy per response token
    final_token_accuracy: float
    trainable_params: int  # parameters with requires_grad, counted
    own_count: int  # the method's own count: 2dr + r per intervention, or peft's get_nb_trainable_parameters
    own_count_source: str
    total_params: int  # the frozen model's own weights
    trainable_percent: float
    tokens_per_second: float
    peak_memory_mb: float
    wall_seconds: float
    steps: int
    artifact_path: str | None = None
    config: dict = field(default_factory=dict)
    world_size: int = 1

    def steps_to(self, accuracy: float) -> int | None:
        """The first evaluated step at which accuracy reached the bound (None if never)."""
        for row in self.eval_curve:
            if row["accuracy"] >= accuracy:
                return row["step"]
        return None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------ distributed
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    """Under torchrun (WORLD_SIZE > 1): one process group, gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _all_reduce_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.world > 1:
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


# ------------------------------------------------------------------ memory
class PeakMemory:
    """Peak memory above the start of the run: CUDA's allocator counter on a GPU, else the
    process's resident set sampled every 5 ms (so earlier runs in the process do not count)."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.peak_mb = 0.0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = _rss_bytes()
            self._peak = self._base
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, _rss_bytes())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, _rss_bytes()) - self._base
        self.peak_mb = max(0.0, peak / 2**20)
        return False


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ------------------------------------------------------------------ training
def build_method(model, config: FinetuneConfig, provenance: dict) -> Method:
    for p in model.hf.parameters():
        p.requires_grad_(False)
    model.hf.eval()  # the base model's own dropout stays off for every method
    if config.method in REFT_METHODS:
        layers = resolve_layers(config.layers, model.n_layers)
        return ReftMethod(model, config, layers, provenance)
    if config.method in PEFT_METHODS:
        return PeftMethod(model, config)
    return FullMethod(model, config)


def resolve_layers(layers, n_layers: int) -> list[int]:
    if layers == "all":
        return list(range(n_layers))
    out = []
    for l in layers:
        if not -n_layers <= l < n_layers:
            raise ConfigError(f"finetune config field 'layers': layer {l} is out of range for a model with "
                              f"{n_layers} layers; use 0..{n_layers - 1} (negative counts from the last)")
        out.append(l % n_layers)
    return sorted(set(out))


def response_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed CE over response tokens, number of correct tokens per row, response tokens per row."""
    pred, target = logits[:, :-1].float(), labels[:, 1:]
    loss = nn.functional.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), ignore_index=-100,
                                       reduction="sum")
    mask = target != -100
    correct = ((pred.argmax(-1) == target) & mask).sum(1)
    return loss, correct, mask.sum(1)


# Models whose LM head output cannot be cut to the response rows (found out on first use).
_FULL_HEAD_ONLY: "weakref.WeakKeyDictionary[nn.Module, bool]" = weakref.WeakKeyDictionary()


def response_rows(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where the loss is: the flat index (into the B*T hidden rows) of every position that
    predicts a response token, that token, and its example's row."""
    target = labels[:, 1:]
    rows, cols = (target != -100).nonzero(as_tuple=True)
    return rows * labels.shape[1] + cols, target[rows, cols], rows


@contextmanager
def head_on_rows(hf: nn.Module, flat_rows: torch.Tensor, n_rows: int):
    """While open, the model's LM head (`get_output_embeddings()`) is fed only the hidden rows
    `flat_rows` of its [B, T, d] input, so logits are [N, V] instead of [B, T, V]. Whatever the
    model does after its head (Gemma2's final logit softcapping, Cohere's logit scale) is
    elementwise per row and still applies. An input of another size (prompt tuning's virtual
    tokens) is left alone; `state["used"]` says whether the cut happened."""
    head = hf.get_output_embeddings() if hasattr(hf, "get_output_embeddings") else None
    state = {"used": False}
    if head is None:
        yield state
        return

    def cut(_module, args):
        h = args[0]
        if not torch.is_tensor(h) or h.dim() < 2 or h.shape[:-1].numel() != n_rows:
            return None
        state["used"] = True
        return (h.reshape(-1, h.shape[-1]).index_select(0, flat_rows.to(h.device)), *args[1:])

    handle = head.register_forward_pre_hook(cut)
    try:
        yield state
    finally:
        handle.remove()


def response_loss_terms(hf: nn.Module, forward: Callable[[], Any], labels: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`response_loss_sum` of `forward()`'s logits without computing logits the loss ignores:
    the LM head (a third of GPT-2 small's forward FLOPs) runs on the response tokens only and
    no [B, T, V] tensor is kept. Falls back to the full logits for a model whose output does
    not come out as one row per response token (remembered per model)."""
    B, T = labels.shape
    flat, target, rows = response_rows(labels)
    if hf not in _FULL_HEAD_ONLY:
        with head_on_rows(hf, flat, B * T) as state:
            out = forward()
        logits = _output_logits(out)
        if state["used"] and logits.dim() == 2 and logits.shape[0] == flat.numel():
            return _row_loss_terms(logits, target.to(logits.device), rows.to(logits.device), B)
        _FULL_HEAD_ONLY[hf] = True
        if state["used"]:  # the head was cut but the output is not one row per token: redo in full
            logits = _output_logits(forward())
    else:
        logits = _output_logits(forward())
    # prompt tuning prepends virtual tokens: keep the real positions
    return response_loss_sum(logits[:, -T:], labels)


def _output_logits(out) -> torch.Tensor:
    logits = getattr(out, "logits", None)
    return logits if logits is not None else (out[0] if isinstance(out, tuple) else out)


def _row_loss_terms(logits: torch.Tensor, target: torch.Tensor, rows: torch.Tensor, n_rows: int):
    logits = logits.float()
    loss = nn.functional.cross_entropy(logits, target, reduction="sum")
    hits = (logits.detach().argmax(-1) == target).long()
    correct = torch.zeros(n_rows, dtype=torch.long, device=logits.device).index_add_(0, rows, hits)
    return loss, correct, torch.bincount(rows, minlength=n_rows)


def train_micro_step(method: Method, batch: Encoded, normaliser: torch.Tensor) -> torch.Tensor:
    """Forward, response-token loss and backward of one micro-batch (gradients accumulate);
    the loss is divided by `normaliser`, the optimizer step's response-token count. Returns
    the summed (undivided) loss, detached. The same step for `finetune` and bench/."""
    loss_sum, _, _ = method.loss_terms(batch)
    (loss_sum / normaliser).backward()
    return loss_sum.detach()


@torch.no_grad()
def evaluate(method: Method, data: Encoded, batch_size: int, device) -> dict:
    method.eval()
    loss_sum, tokens, exact, tok_correct = 0.0, 0, 0, 0
    for i in range(0, len(data), batch_size):
        batch = _to(data.rows(slice(i, i + batch_size)), device)
        loss, correct, count = method.loss_terms(batch)
        loss_sum += loss.item()
        tokens += int(count.sum())
        tok_correct += int(correct.sum())
        exact += int((correct == count).sum())
    method.train()
    return {"loss": loss_sum / max(tokens, 1), "accuracy": exact / len(data),
            "token_accuracy": tok_correct / max(tokens, 1)}


def _to(batch: Encoded, device) -> Encoded:
    return Encoded(*(t.to(device) for t in (batch.input_ids, batch.attention_mask, batch.labels, batch.prompt_lengths)))


def pick_device(config: FinetuneConfig, d_local_rank: int = 0) -> str:
    if config.device != "auto":
        if config.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("finetune config field 'device': CUDA is not available here; use 'auto' or 'cpu'")
        return config.device
    return f"cuda:{d_local_rank}" if torch.cuda.is_available() else "cpu"


def finetune(config: FinetuneConfig, progress: Callable[[int, int, float], None] | None = None,
             out_dir: str | Path | None = None, model=None, verbose: bool = True) -> FinetuneResult:
    """Train `config.method` on the config's data and evaluate it. `progress(step, n_steps, loss)`
    is called after each optimizer step. With `out_dir`, the trained intervention (or peft
    adapter, or full model) is saved there as `out_dir/artifact` plus `out_dir/finetune.json`.
    `model` (a loaded interventions Model) skips loading; it is left frozen but a peft or
    full finetune changes it, so pass a fresh one per run."""
    if not isinstance(config, FinetuneConfig):
        raise ConfigError("finetune() takes a FinetuneConfig; build one with FinetuneConfig(...) or "
                          "load_finetune_config(path)")
    dist_ = init_distributed("cuda" if torch.cuda.is_available() and config.device != "cpu" else "cpu")
    device = pick_device(config, dist_.local_rank)
    if config.bf16 and not device.startswith("cuda"):
        raise ConfigError("finetune config field 'bf16': bf16 training needs a GPU; set bf16 = false on CPU")

    # data
    task = None
    if config.task is not None:
        train_ex, eval_ex, task = task_examples(config)
    else:
        train_ex, eval_ex = jsonl_examples(config)
    if model is None:
        path = resolve_model_path(config, words_of(train_ex + eval_ex)
                                  + (list(task.vocabulary) if task is not None else []))
        model = load_for_finetune(config, path, device)
    dev = model.device
    add_eos = config.data is not None
    train_data = encode_examples(model.tokenizer, train_ex, config.max_length, add_eos)
    eval_data = encode_examples(model.tokenizer, eval_ex, config.max_length, add_eos)

    provenance = {"model_name": model.name, "model_fingerprint": model.fingerprint, "model": config.model,
                  "task": task.name if task is not None else None, "data": config.data,
                  "method": config.method, "seed": config.seed, "config_hash": config.hash()}
    total_params = sum(p.numel() for p in model.hf.parameters())
    method = build_method(model, config, provenance)
    trainable = method.trainable_count()
    formula = method.formula_count()
    if verbose and dist_.is_main:
        print(f"[{config.method}] trainable parameters: {trainable:,} = {method.formula_text()} = {formula:,} "
              f"({100 * trainable / total_params:.4f}% of {total_params:,})", flush=True)
    if trainable != formula:
        raise RuntimeError(f"trainable parameter count {trainable} differs from the formula's {formula} "
                           f"({method.formula_text()}); this is a bug in the {config.method} setup")
    if dist_.world > 1:  # identical starting weights on every rank
        import torch.distributed as dist

        for p in method.params:
            dist.broadcast(p.data, src=0)

    # schedule
    per_step = config.batch_size * config.grad_accum
    n_steps = config.steps or config.epochs * math.ceil(len(train_data) / per_step)
    optimizer = torch.optim.AdamW(method.params, lr=config.lr, weight_decay=config.weight_decay)
    from transformers import get_scheduler

    scheduler = get_scheduler(config.schedule, optimizer, num_warmup_steps=int(config.warmup_ratio * n_steps),
                              num_training_steps=n_steps)
    order_gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed + 1000 * dist_.rank)  # dropout streams differ per rank

    def batches():
        while True:
            order = torch.randperm(len(train_data), generator=order_gen)
            for i in range(0, len(order) - per_step + 1 if len(order) >= per_step else 1, per_step):
                yield order[i:i + per_step]

    loss_curve, eval_curve = [], []
    tokens_seen, train_seconds = 0, 0.0
    started = time.perf_counter()
    stream = batches()
    if config.eval_every:  # the curve starts where training starts
        eval_curve.append({"step": 0, **evaluate(method, eval_data, max(config.batch_size, 32), dev)})
    method.train()
    with PeakMemory(dev) as mem:
        for step in range(1, n_steps + 1):
            t0 = time.perf_counter()
            idx = next(stream)
            micro = [idx[j:j + config.batch_size] for j in range(0, len(idx), config.batch_size)]
            # the whole step's response-token count, over micro-batches and processes (every
            # rank draws the same idx, so each can count it)
            n_tokens = torch.tensor(float((train_data.labels[idx][:, 1:] != -100).sum()))
            step_loss = torch.zeros(())
            for m in micro:
                mine = m[dist_.rank::dist_.world]
                if len(mine) == 0:
                    continue
                batch = _to(train_data.rows(mine), dev)
                step_loss += train_micro_step(method, batch, n_tokens.to(dev)).cpu()
                tokens_seen += int(batch.attention_mask.sum())
            if dist_.world > 1:
                for p in method.params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    _all_reduce_sum(p.grad, dist_)
                _all_reduce_sum(step_loss, dist_)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            train_seconds += time.perf_counter() - t0
            loss_curve.append(float(step_loss) / float(n_tokens))
            if progress is not None and dist_.is_main:
                progress(step, n_steps, loss_curve[-1])
            if (config.eval_every and step % config.eval_every == 0) or step == n_steps:
                eval_curve.append({"step": step, **evaluate(method, eval_data, max(config.batch_size, 32), dev)})
    tokens_seen = int(_all_reduce_sum(torch.tensor(float(tokens_seen)), dist_))
    final = eval_curve[-1]
    result = FinetuneResult(
        method=config.method, loss_curve=loss_curve, eval_curve=eval_curve, final_accuracy=final["accuracy"],
        final_loss=final["loss"], final_token_accuracy=final["token_accuracy"], trainable_params=trainable,
        own_count=formula, own_count_source=method.formula_text(),
        total_params=total_params, trainable_percent=100 * trainable / total_params,
        tokens_per_second=tokens_seen / max(train_seconds, 1e-9), peak_memory_mb=mem.peak_mb,
        wall_seconds=time.perf_counter() - started, steps=n_steps, config=config.to_dict(), world_size=dist_.world)
    if out_dir is not None and dist_.is_main:
        result.artifact_path = str(save_trained(method, model, Path(out_dir) / "artifact"))
        from interventions.io import atomic_write_json

        atomic_write_json(Path(out_dir) / "finetune.json", result.to_dict())
        # so `dii runs` lists it beside the searches
        atomic_write_json(Path(out_dir) / "manifest.json", {
            "kind": "finetune", "name": Path(out_dir).name, "config": config.to_dict(), "config_hash": config.hash(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "status": "done", "n_cells": None,
            "result": {k: v for k, v in result.to_dict().items() if k not in ("loss_curve", "eval_curve", "config")}})
    return result


def save_trained(method: Method, model, directory: Path) -> Path:
    """ReFT: our artifact (config.json + safetensors). peft: its adapter directory
    (safetensors). full: the model's own save_pretrained directory (safetensors)."""
    if isinstance(method, ReftMethod):
        return method.reft.save(directory)
    if isinstance(method, PeftMethod):
        return write_dir_atomic(directory, lambda tmp: method.peft_model.save_pretrained(tmp))

    def write_full(tmp: Path) -> None:
        model.hf.save_pretrained(tmp)
        model.tokenizer.save_pretrained(tmp)

    return write_dir_atomic(directory, write_full)


# ------------------------------------------------------------------ command line
def run_finetune_from_config(path: str | Path, runs_dir: str | Path | None = None, out: str | Path | None = None,
                             progress: Callable[[int, int, float], None] | None = None) -> FinetuneResult:
    """`dii finetune CONFIG.toml`: train, then write runs/<name>/ (finetune.json + artifact/)."""
    from experiments.runs import runs_root

    config = load_finetune_config(path)
    out_dir = Path(out) if out is not None else runs_root(runs_dir) / config.run_name
    return finetune(config, progress=progress, out_dir=out_dir)


def format_result(r: FinetuneResult) -> str:
    return (f"{r.method}: accuracy {r.final_accuracy:.3f}, eval loss {r.final_loss:.4f}, "
            f"{r.trainable_params:,} trainable params ({r.trainable_percent:.4f}%), {r.tokens_per_second:,.0f} tokens/s, "
            f"peak memory {r.peak_memory_mb:.1f} MB, {r.wall_seconds:.1f} s"
            + (f"; saved to {r.artifact_path}" if r.artifact_path else ""))


def cli_finetune(args) -> int:
    """`dii finetune CONFIG.toml [--out DIR] [--runs-dir DIR]` (registered in experiments/cli.py)."""
    from tqdm.auto import tqdm

    bar = None
    is_main = int(os.environ.get("RANK", "0")) == 0

    def progress(step: int, n_steps: int, loss: float) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=n_steps, desc="finetune", disable=not is_main)
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    try:
        result = run_finetune_from_config(args.config, runs_dir=getattr(args, "runs_dir", None),
                                          out=getattr(args, "out", None), progress=progress)
    finally:
        if bar is not None:
            bar.close()
    if is_main:
        print(format_result(result))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    from causal.errors import WorkbenchError

    parser = argparse.ArgumentParser(prog="python -m experiments.finetune", description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("--out", default=None, help="output directory (default runs/<name>)")
    parser.add_argument("--runs-dir", default=None)
    args = parser.parse_args(argv)
    try:
        return cli_finetune(args)
    except WorkbenchError as e:
        print(f"finetune: error: {e}", file=sys.stderr)
        return 2


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _safe_name(s: str) -> bool:
    return bool(s) and all(ch.isalnum() or ch in "-_." for ch in s) and not s.startswith(".")


if __name__ == "__main__":
    raise SystemExit(main())
