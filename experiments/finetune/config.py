"""The finetune config: one pydantic model on the shared `WorkbenchConfig`, read from TOML
(flat, or a [finetune] table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from experiments.config import TASK_OPTIONS_HELP, WorkbenchConfig, read_toml
from experiments.errors import ConfigError
from experiments.models import CONFIG_MODELS
from experiments.schedule import LR_SCHEDULES
from interventions import InterventionError
from interventions.reft_artifact import REFT_METHODS, PositionSpec

PEFT_METHODS = ("lora", "prefix_tuning", "prompt_tuning")
METHODS = (*REFT_METHODS, *PEFT_METHODS, "full")
COMPONENTS = ("block_output", "attn_output", "mlp_output")
# Rule changes a finetune can ask of a built-in task: task -> allowed variant keys.
# Changed rules a finetune can train toward, per task (experiments.finetune_data.task_variant).
VARIANTS = {"price_tagging": ("lower_shift", "upper_shift", "ignore_lower"),
            "hierarchical_equality_tokens": ("left_only", "right_only", "negate")}
VARIANT_FLAGS = ("ignore_lower", "left_only", "right_only", "negate")  # 0 or 1; the others are integer shifts


# ---- config
class FinetuneConfig(WorkbenchConfig):
    KIND: ClassVar[str] = "finetune config"
    TOML_TABLE: ClassVar[str] = "finetune"
    HASH_HISTORY: ClassVar[dict[str, Any]] = {"hypothesis": None, "task_options": {}, "rule": None, "eval_data": None,
                                              "eval_generate": True}
    HASH_NAMES: ClassVar[dict[str, str]] = {"lr_schedule": "schedule"}  # its name before search and finetune shared it
    OLD_NAMES: ClassVar[dict[str, str]] = {"schedule": "lr_schedule"}

    model: str = Field(description="'zoo:<task>', 'config:<name>' (random weights: " + ", ".join(CONFIG_MODELS)
                       + "), a local Hugging Face model directory or a hub id")
    task: str | None = Field(None, description="the task to finetune on (or give 'data'): a built-in name, a task "
                             "file ('my_task.toml') or a builder ('my_tasks.py:build'), relative to the config")
    task_options: dict[str, Any] = Field(default_factory=dict, description=TASK_OPTIONS_HELP)
    hypothesis: str | None = Field(None, description="train toward this hypothesis of the task (default: its main "
                                   "one): a changed rule written as an alternative hypothesis")
    variant: dict[str, int] | None = Field(None, description="a changed rule of the task, e.g. {lower_shift = 2} "
                                                             "for price_tagging")
    rule: str | None = Field(None, description="a changed rule written as an expression over the task's variables "
                             "(as in task files), the answer it gives: e.g. \"s\" for ioi (answer with the subject)")
    data: str | None = Field(None, description="a JSONL file with 'prompt' and 'response' per line (instead of task)")
    eval_data: str | None = Field(None, description="with data: a JSONL file of held-out pairs to evaluate on (else "
                                  "eval_fraction of data is held out)")
    eval_generate: bool = Field(True, description="also score the held-out prompts by generation: greedy decoding "
                                "with the interventions on the prompt only, exact match of the response")
    method: str = Field("loreft", description=f"what trains, from {list(METHODS)}")
    layers: list[int] | str = Field("all", description='"all" or a list of layer indices (negative from the last)')
    component: str = Field("block_output", description=f"where ReFT intervenes, from {list(COMPONENTS)}")
    rank: int = Field(4, description="ReFT rank r (rows of R and W)")
    positions: str = Field("l1", description='first-n / last-n prompt tokens ReFT edits: "f1+l1", "l3", ...')
    share_weights: bool = Field(True, description="one intervention per layer for all positions (tied), "
                                                  "else one per f/l group")
    dropout: float | int = Field(0.0, description="dropout on the ReFT edit, in [0, 1)")
    lr: float | int = Field(4e-3, description="AdamW learning rate")
    weight_decay: float | int = Field(0.0, description="AdamW weight decay, in [0, 1)")
    lr_schedule: str = Field("linear", description=f"learning rate over the steps, from {list(LR_SCHEDULES)} (linear "
                             "and cosine decay to 0; experiments/schedule.py)")
    warmup_ratio: float | int = Field(0.0, description="share of the steps spent warming up (the rate grows linearly "
                                      "to lr), in [0, 1)")
    grad_accum: int = Field(1, description="micro-batches per optimizer step")
    epochs: int = Field(1, description="passes over the training data")
    steps: int | None = Field(None, description="optimizer steps; overrides epochs")
    batch_size: int = Field(16, description="examples per micro-batch")
    bf16: bool = Field(False, description="bf16 training (GPU only)")
    eval_every: int = Field(0, description="optimizer steps between evaluations; 0 = only at the end")
    seed: int = Field(0, description="data order, initialisation and dropout seed")
    init_from: str | None = Field(None, description="a Subspace artifact directory to start R from (ReFT methods)")
    freeze_rotation: bool = Field(False, description="keep R fixed (LoReFT), train W and b only")
    n_train: int = Field(1000, description="task examples to train on")
    n_eval: int = Field(200, description="task examples to evaluate on")
    eval_fraction: float | int = Field(0.2, description="JSONL pairs held out for evaluation, in (0, 1)")
    max_length: int = Field(256, description="tokens per example at most")
    lora_r: int = Field(4, description="LoRA rank (peft)")
    lora_alpha: int = Field(8, description="LoRA alpha (peft)")
    lora_dropout: float | int = Field(0.0, description="LoRA dropout (peft), in [0, 1)")
    lora_target_modules: list[str] | None = Field(None, description="LoRA targets; default: peft's own choice")
    num_virtual_tokens: int = Field(4, description="prefix / prompt tuning virtual tokens (peft)")
    name: str | None = Field(None, description="run name (default: finetune-<task>-<method>-<hash>)")
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu' or 'cuda[:N]'")
    device_map: str | None = Field(None, description="'auto' spreads a large model over the GPUs (accelerate)")
    model_seed: int = Field(0, description="zoo model seed, or the seed of a config: model's random weights")

    def validate_fields(self) -> None:
        need = self.need

        need(isinstance(self.model, str) and self.model.strip() != "", "model",
             "give 'zoo:<task>', 'config:<name>' (" + ", ".join(CONFIG_MODELS) + "), a local model directory or a hub id")
        if self.model.startswith("config:"):
            need(self.model[7:] in CONFIG_MODELS, "model",
                 f"unknown config model {self.model!r}; allowed values: {['config:' + k for k in CONFIG_MODELS]}")
        need((self.task is None) != (self.data is None), "task",
             "give exactly one of 'task' (a built-in task) or 'data' (a JSONL file of prompt/response pairs)")
        need(self.eval_data is None or self.data is not None, "eval_data", "held-out pairs go with 'data'; set it too")
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
        need(self.lr_schedule in LR_SCHEDULES, "lr_schedule",
             f"got {self.lr_schedule!r}; allowed values: {list(LR_SCHEDULES)}")
        for name in ("share_weights", "bf16", "freeze_rotation"):
            need(isinstance(getattr(self, name), bool), name, f"got {getattr(self, name)!r}; use true or false")
        need(_is_int(self.seed) and _is_int(self.model_seed), "seed", "seeds are integers")
        need(self.device_map in (None, "auto"), "device_map", f"got {self.device_map!r}; allowed values: ['auto']")
        self.check_device_and_seeds(("n_train", "n_eval"))
        if self.init_from is not None or self.freeze_rotation:
            need(self.method in REFT_METHODS, "init_from",
                 f"init_from / freeze_rotation start a ReFT intervention from a subspace; use method 'loreft'"
                 f" (got {self.method!r})")
        if self.freeze_rotation:
            need(self.method == "loreft", "freeze_rotation", "only LoReFT has a rotation to freeze; use method 'loreft'")
        need(self.rule is None or self.task is not None, "rule", "a rule changes a task's answers; set 'task' too")
        need(self.rule is None or (self.variant is None and self.hypothesis is None), "rule",
             "give one changed rule: a rule, a variant or a hypothesis")
        if self.task is not None:
            task = self.checked_task()
            if self.rule is not None:
                from causal.errors import CausalModelError
                from causal.tasks.rules import rule_variant

                try:
                    rule_variant(task, self.rule)
                except CausalModelError as e:
                    need(False, "rule", str(e))
            need(self.hypothesis is None or self.hypothesis in task.hypotheses, "hypothesis",
                 f"task {task.name!r} has no hypothesis {self.hypothesis!r}; allowed values: {sorted(task.hypotheses)}")
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
    def default_run_name(self) -> str:
        what = self.task or Path(self.data).stem
        return f"finetune-{what}-{self.method}-{self.hash()}"

    @classmethod
    def upgrade(cls, d: dict[str, Any]) -> dict[str, Any]:
        d = super().upgrade(d)
        if d.get("lr_schedule") == "constant_with_warmup":  # the warm-up is warmup_ratio's, whatever the schedule
            d["lr_schedule"] = "constant"
        return d


def PositionSpecField(text) -> PositionSpec:
    try:
        return PositionSpec.parse(text)
    except InterventionError as e:
        raise ConfigError(f"finetune config field 'positions': {e}") from None


def load_finetune_config(path: str | Path) -> FinetuneConfig:
    return FinetuneConfig.from_dict(read_toml(path, "finetune", relative=("data", "eval_data", "init_from", "model")))


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)
