"""A search config: one TOML file, one pydantic model. Each field is declared once, here,
with its documentation; `AlignmentSearch(model, task, **fields)` takes the same fields, and
the CLI's `dii search --help` and the app's form help read these descriptions.

Validation here is everything that can be checked without loading the model; what needs the
model (k against the hidden size, layers in range) is checked by AlignmentSearch.
Its hash names the run unless it has a name.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from causal.io import json_hash
from experiments.errors import ConfigError

COMPONENTS = ("block_output", "attn_output", "mlp_output", "head_output")
PARAMETRIZATIONS = ("qr", "householder", "cayley", "matrix_exp")
# Fields added after the first release: left out of the hash at their default, so older
# configs keep their hash (and their run name).
LATER_FIELDS = ("task_options", "contrastive", "temperature", "dbm_sparsity", "plugins", "seeds", "vary_model_seed", "lr_schedule",
                "validation_fraction", "check_model_accuracy", "loss_over")
# A later field whose default is not what runs did before it existed: left out of the hash
# only at that earlier behaviour, so an old run is never resumed under the new default.
BEHAVIOUR_BEFORE = {"loss_over": "vocabulary"}
LOSS_OVER = ("vocabulary", "answers")
LR_SCHEDULES = ("constant", "linear", "cosine")
MAX_EXAMPLES = 500_000


def device_problem(device) -> str | None:
    """Why `device` cannot be used here (None when it can): a name torch knows, and hardware
    this machine has."""
    import torch

    if not isinstance(device, str) or not device:
        return f"got {device!r}; use 'auto', 'cpu' or 'cuda[:N]'"
    if device == "auto":
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        return f"got {device!r}, which torch does not know; use 'auto', 'cpu' or 'cuda[:N]'"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return f"got {device!r}, but this machine has no CUDA device; use 'auto' or 'cpu'"
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            return f"got {device!r}, but this machine has {torch.cuda.device_count()} CUDA device(s); use 'cuda:0'"
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        return f"got {device!r}, but MPS is not available here; use 'auto' or 'cpu'"
    elif dev.type not in ("cpu", "cuda", "mps"):
        return f"got {device!r}; use 'auto', 'cpu' or 'cuda[:N]'"
    return None


TASK_OPTIONS_HELP = ("keyword arguments of the task's builder, as a [task_options] table: a built-in's (e.g. "
                     "n_objects for hierarchical_equality) or your 'my_tasks.py:build(**options)'")


class WorkbenchConfig(BaseModel):
    """What every config shares: strict types, unknown fields refused, every error one
    ConfigError naming the field, `from_dict`, and the field documentation for help texts."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)
    KIND: ClassVar[str] = "config"  # the word in messages: "config field 'k'", "finetune config field 'rank'"
    TOML_TABLE: ClassVar[str] = "search"  # the table of a config file the CLI reads

    def __init__(self, **data):
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise _config_error(e, type(self)) from None

    def __setattr__(self, name, value):
        try:
            super().__setattr__(name, value)
        except ValidationError as e:
            raise _config_error(e, type(self)) from None

    @model_validator(mode="before")
    @classmethod
    def _task_object(cls, data):
        """A Task object in `task` becomes the spec string this process resolves it by."""
        from causal.tasks import Task, task_spec_of

        if isinstance(data, dict) and isinstance(data.get("task"), Task):
            data = {**data, "task": task_spec_of(data["task"])}
        return data

    @model_validator(mode="after")
    def _check(self):
        self.validate_fields()
        return self

    def validate_fields(self) -> None:
        """Checks beyond the types; raise ConfigError naming the field."""

    def load_task(self):
        """The config's Task: `task` resolved with its `task_options`."""
        from causal.tasks import resolve_task

        return resolve_task(self.task, options=self.task_options)

    def checked_task(self):
        """load_task(), its error a ConfigError naming the field at fault (task or task_options)."""
        from causal.errors import CausalModelError

        try:
            return self.load_task()
        except CausalModelError as e:
            self.need(False, "task_options" if self.task_options and "task options" in str(e) else "task", str(e))

    def check_device_and_seeds(self, size_fields: tuple[str, ...]) -> None:
        """Shared by every config: a device this machine has, seeds >= 0, and example counts a
        run can generate in reasonable time (generation holds them all in memory)."""
        problem = device_problem(self.device)
        self.need(problem is None, "device", problem or "")
        for name in ("seed", "model_seed"):
            self.need(getattr(self, name) >= 0, name, f"got {getattr(self, name)!r}; seeds are integers >= 0")
        for name in size_fields:
            v = getattr(self, name)
            self.need(v <= MAX_EXAMPLES, name, f"got {v:,}; at most {MAX_EXAMPLES:,} examples are generated per run "
                      "(the counterfactuals are built in memory, one causal-model run each); use fewer")

    def need(self, cond: bool, fieldname: str, msg: str) -> None:
        if not cond:
            raise ConfigError(f"{self.KIND} field {fieldname!r}: {msg}")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    def to_toml(self) -> str:
        """The config as the CLI reads it (`dii search FILE` / `dii finetune FILE`): a [search]
        or [finetune] table of the fields that differ from their defaults, the required ones always."""
        import tomli_w

        fields = type(self).model_fields
        table = {k: v for k, v in self.to_dict().items()
                 if v is not None and (fields[k].is_required() or v != fields[k].get_default(call_default_factory=True))}
        return tomli_w.dumps({self.TOML_TABLE: table})

    @classmethod
    def check_values(cls, values: dict[str, Any]) -> tuple[Any, dict[str, str]]:
        """(the config, {}) when `values` make a valid one, else (None, {field: message}) for
        every bad field at once: after an error the field takes its default and the check goes
        on (a form shows each message under its field)."""
        trial, errors = dict(values), {}
        for _ in range(len(cls.model_fields) + 1):
            try:
                config = cls(**trial)
            except ConfigError as e:
                name = e.field
                if name not in cls.model_fields or name in errors or cls.model_fields[name].is_required():
                    errors[name if name in cls.model_fields else "config"] = str(e)
                    return None, errors
                errors[name] = str(e)
                trial[name] = cls.model_fields[name].get_default(call_default_factory=True)
            else:
                return (None, errors) if errors else (config, {})
        return None, errors

    def replace(self, **changes):
        return type(self)(**{**self.to_dict(), **changes})

    @classmethod
    def required_fields(cls) -> list[str]:
        return [n for n, f in cls.model_fields.items() if f.is_required()]

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        if not isinstance(d, dict):
            raise ConfigError(f"a {cls.KIND} is a table of fields, not a {type(d).__name__}")
        known = set(cls.model_fields)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.KIND} field(s) {unknown}; allowed fields: {sorted(known)}")
        for required in cls.required_fields():
            if required not in d:
                raise ConfigError(f"{cls.KIND} field {required!r} is missing; it has no default "
                                  f"({cls.model_fields[required].description})")
        return cls(**d)

    @classmethod
    def field_help(cls, name: str) -> str:
        return cls.model_fields[name].description or ""

    @classmethod
    def fields_help(cls) -> str:
        """Every field with its default and documentation (for --help)."""
        lines = []
        for name, f in cls.model_fields.items():
            default = "required" if f.is_required() else repr(f.get_default(call_default_factory=True))
            lines.append(f"  {name} = {default}\n      {f.description}")
        return "\n".join(lines)


class SearchConfig(WorkbenchConfig):
    model: str = Field(description="'zoo' (a small model trained here on this task, cached), 'zoo:<built-in "
                                   "task>', a local Hugging Face model directory, or a hub id")
    task: str = Field(description="the hypothesis and prompts: a built-in task name, a task file ('my_task.toml'), "
                                  "or a builder ('my_tasks.py:build', 'package.module:build'); paths are relative "
                                  "to the config")
    task_options: dict[str, Any] = Field(default_factory=dict, description=TASK_OPTIONS_HELP)
    hypothesis: str | None = Field(None, description="which of the task's hypotheses; default: its main one")
    variables: list[str] | None = Field(None, description="variables to align; default: the hypothesis' "
                                                          "intermediate variables")
    layers: list[int] | str = Field("all", description='"all" or a list of layer indices (negative from the last)')
    positions: list[int | str] = Field(default_factory=lambda: ["last"],
                                       description="token positions: indices or task position names such as \"last\" or a "
                                                   "template field; a field of several tokens is read at its last token, "
                                                   "or 'field:first' / 'field:<offset>'")
    components: list[str] = Field(default_factory=lambda: ["block_output"],
                                  description=f"site components, from {list(COMPONENTS)}")
    method: str = Field("das", description="the main alignment method (a registered featurizer: das, boundless, "
                                           "dbm, dbm_pca, pca, or a plugin's)")
    k: int = Field(4, description="dimensions per variable (das, pca, random_rotation; ignored by boundless, dbm)")
    parametrization: str = Field("qr", description=f"how rotations stay orthonormal, from {list(PARAMETRIZATIONS)}")
    epochs: int = Field(5, description="passes over the kept training examples per cell")
    steps: int | None = Field(None, description="if set, overrides epochs: exact optimizer steps per cell")
    batch_size: int = Field(64, description="counterfactual examples per optimizer step")
    lr: float | int = Field(1e-2, description="Adam learning rate")
    lr_schedule: str = Field("constant", description="learning rate over a cell's steps: 'constant', 'linear' or "
                             "'cosine' (both decay to 0)")
    validation_fraction: float | int = Field(0.0, description="share of the kept training examples held out for "
                                             "early stopping: the state with the best validation IIA, checked once "
                                             "per epoch, is kept (0: the last state)")
    loss_over: str = Field("answers", description="the training softmax: over the task's 'answers' only (the LM "
                           "head computes just those rows, about half a GPT-2-small step saved), or over the whole "
                           "'vocabulary'; IIA reads the answers either way")
    n_train: int = Field(2000, description="counterfactual training examples generated")
    n_test: int = Field(500, description="held-out counterfactual examples generated")
    seed: int = Field(0, description="data, initialisation and batch-order seed")
    seeds: list[int] | None = Field(None, description="run every cell once per seed (each sets the data and init "
                                    "seed; the zoo model's stays model_seed unless vary_model_seed) and report "
                                    "mean, sd and each seed's value")
    vary_model_seed: bool = Field(False, description="with seeds: also train (or load) zoo model seed = each seed")
    controls: list[str] = Field(default_factory=list, description="other registered methods and controls, each one "
                                "more row per site (random_rotation, vanilla, untrained_model, disjoint_split, "
                                "probe, pca, dbm, ...)")
    disjoint_on: list[str] | None = Field(None, description="inputs whose held-out values the disjoint_split "
                                                            "control keeps out of training (default: all inputs)")
    contrastive: bool | None = Field(None, description="counterfactuals in pairs sharing a base whose sources give "
                                     "different outputs, so rules that read only the base stay at chance; default: "
                                     "on wherever the task admits them (the manifest records which)")
    name: str | None = Field(None, description="run name (default: '<task>-<config hash>')")
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu' or 'cuda[:N]'")
    dtype: str | None = Field(None, description="'float32', 'bfloat16' or 'float16' for the frozen model")
    device_map: str | None = Field(None, description="'auto' spreads a large model over the GPUs (accelerate)")
    model_seed: int = Field(0, description="seed of the zoo model when model = 'zoo:<task>'")
    temperature: list[float | int] = Field(default_factory=lambda: [50.0, 0.1],
                                           description="boundless: mask temperature [start, end], annealed")
    dbm_sparsity: float | int = Field(0.05, description="dbm, dbm_pca: weight of the mean-mask sparsity penalty")
    plugins: list[str] = Field(default_factory=list, description="method files to load (@register'ed "
                               "AlignmentMethod subclasses), relative to the config file")
    check_model_accuracy: bool = Field(True, description="refuse to search a model whose accuracy on the task's "
                                       "factual prompts is within 0.1 of chance (it cannot do the task, so every IIA "
                                       "would be noise); false searches it anyway")

    # ---------------------------------------------------------------- validation
    def validate_fields(self) -> None:
        from experiments.methods import load_plugins, method_names

        need = self.need

        need(self.model.strip() != "", "model", "give 'zoo:<task>', a local Hugging Face model directory, or a hub id")
        load_plugins(self.plugins)
        featurizers = method_names("featurizer")
        need(self.method in featurizers, "method", f"got {self.method!r}; allowed values: {featurizers}")
        need(self.k >= 1, "k", f"got {self.k!r}; use a positive integer")
        need(self.parametrization in PARAMETRIZATIONS, "parametrization",
             f"got {self.parametrization!r}; allowed values: {list(PARAMETRIZATIONS)}")
        for name in ("epochs", "batch_size", "n_train", "n_test"):
            v = getattr(self, name)
            need(v >= 1, name, f"got {v!r}; use a positive integer")
        self.check_device_and_seeds(("n_train", "n_test"))
        need(self.seeds is None or all(s >= 0 for s in self.seeds), "seeds",
             f"got {self.seeds!r}; seeds are integers >= 0")
        need(self.steps is None or self.steps >= 1, "steps",
             f"got {self.steps!r}; use a positive integer or leave it out to use epochs")
        need(self.lr > 0, "lr", f"got {self.lr!r}; use a positive number such as 1e-2")
        need(self.lr_schedule in LR_SCHEDULES, "lr_schedule",
             f"got {self.lr_schedule!r}; allowed values: {list(LR_SCHEDULES)}")
        need(self.loss_over in LOSS_OVER, "loss_over", f"got {self.loss_over!r}; allowed values: {list(LOSS_OVER)}")
        need(0 <= self.validation_fraction < 0.5, "validation_fraction",
             f"got {self.validation_fraction!r}; use a share in [0, 0.5), e.g. 0.1")
        if isinstance(self.layers, str):
            need(self.layers == "all", "layers", f"got {self.layers!r}; use \"all\" or a list of layer indices")
        else:
            need(len(self.layers) > 0, "layers", "the layer list is empty; list at least one layer or use \"all\"")
        need(len(self.positions) > 0, "positions",
             "list at least one position: an index (negative counts from the end) or a task position name such as \"last\"")
        need(len(self.components) > 0, "components", f"list at least one of {list(COMPONENTS)}")
        for c in self.components:
            need(c in COMPONENTS, "components", f"unknown component {c!r}; allowed values: {list(COMPONENTS)}")
        others = [m for m in method_names() if m != self.method]
        for c in self.controls:
            need(c in others, "controls", f"unknown control {c!r}; allowed values: {others}")
        need(len(set(self.controls)) == len(self.controls), "controls", "a control is listed twice; list each once")
        need(self.variables is None or len(self.variables) > 0, "variables",
             "list at least one variable name, or leave the field out to use the hypothesis' intermediate variables")
        need(self.disjoint_on is None or len(self.disjoint_on) > 0, "disjoint_on",
             "list the input variables whose held-out values the disjoint split keeps out of training")
        need(self.name is None or _safe_name(self.name), "name", f"got {self.name!r}; use letters, digits, '-', '_' or '.'")
        need(self.dtype in (None, "float32", "bfloat16", "float16"), "dtype",
             f"got {self.dtype!r}; allowed values: ['float32', 'bfloat16', 'float16']")
        need(self.device_map in (None, "auto"), "device_map", f"got {self.device_map!r}; allowed values: ['auto']")
        need(len(self.temperature) == 2 and all(t > 0 for t in self.temperature), "temperature",
             f"got {self.temperature!r}; give [start, end], both positive")
        need(self.dbm_sparsity >= 0, "dbm_sparsity", f"got {self.dbm_sparsity!r}; use a number >= 0")
        need(self.seeds is None or (len(self.seeds) > 0 and len(set(self.seeds)) == len(self.seeds)), "seeds",
             f"got {self.seeds!r}; list distinct integer seeds, e.g. [0, 1, 2], or leave it out for one run at 'seed'")
        need(not self.vary_model_seed or self.seeds is not None, "vary_model_seed", "set 'seeds' too")
        self._validate_task()

    validate = validate_fields  # the name older callers use

    def _validate_task(self) -> None:
        task = self.checked_task()
        if self.hypothesis is not None and self.hypothesis not in task.hypotheses:
            raise ConfigError(f"config field 'hypothesis': task {self.task!r} has no hypothesis {self.hypothesis!r}; "
                              f"allowed values: {sorted(task.hypotheses)}")
        hyp = task.hypothesis(self.hypothesis)
        if self.variables is not None:
            allowed = list(hyp.intermediates) or [v for v in hyp.order if v not in hyp.inputs]
            for v in self.variables:
                if v not in allowed:
                    raise ConfigError(f"config field 'variables': hypothesis {hyp.name or self.hypothesis!r} has no "
                                      f"intermediate variable {v!r}; allowed values: {allowed}")
        elif not hyp.intermediates:
            raise ConfigError(f"config field 'variables': hypothesis {self.hypothesis or task.default_hypothesis!r} has "
                              f"no intermediate variables; name the variables to align, from {list(hyp.order)}")
        if self.disjoint_on is not None:
            for v in self.disjoint_on:
                if v not in hyp.inputs:
                    raise ConfigError(f"config field 'disjoint_on': {v!r} is not an input; allowed values: {list(hyp.inputs)}")
        for p in self.positions:
            if isinstance(p, str) and p.partition(":")[0] not in task.positions:
                raise ConfigError(f"config field 'positions': task {self.task!r} has no position {p!r}; "
                                  f"allowed values: integers or {task.positions} (a field may add ':first', "
                                  "':last' or ':<offset>' to pick among its tokens)")
            if isinstance(p, str) and ":" in p:
                from interventions import InterventionError, split_position

                try:
                    split_position(p)
                except InterventionError as e:
                    raise ConfigError(f"config field 'positions': {e}") from None

    # ---------------------------------------------------------------- identity
    def hash(self) -> str:
        """Stable over key order; the name does not change the hash of what is computed."""
        d = self.to_dict()
        d.pop("name")
        for f in LATER_FIELDS:
            before = BEHAVIOUR_BEFORE.get(f, type(self).model_fields[f].get_default(call_default_factory=True))
            if d[f] == before:
                d.pop(f)
        return json_hash(d)

    @property
    def run_name(self) -> str:
        return self.name or f"{self.task}-{self.hash()}"


field_help = SearchConfig.field_help  # the search config's field documentation, for the CLI and the app
fields_help = SearchConfig.fields_help


def _config_error(e: ValidationError, cls) -> ConfigError:
    err = e.errors()[0]
    original = (err.get("ctx") or {}).get("error")
    if isinstance(original, ConfigError):  # our own check, raised inside the validator
        return original
    loc = err.get("loc") or ()
    field = str(loc[0]) if loc else "?"
    if err.get("type") == "extra_forbidden":
        return ConfigError(f"unknown {cls.KIND} field(s) {[field]}; allowed fields: {sorted(cls.model_fields)}")
    if err.get("type") == "missing":
        return ConfigError(f"{cls.KIND} field {field!r} is missing; it has no default")
    where = field + "".join(f"[{x}]" for x in loc[1:2]) if len(loc) > 1 and isinstance(loc[1], int) else field
    return ConfigError(f"{cls.KIND} field {where!r}: got {err.get('input')!r}; {err.get('msg')} "
                       f"({cls.model_fields[field].description if field in cls.model_fields else ''})")


def read_toml(path: str | Path, table: str, relative: tuple[str, ...] = ("data", "init_from")) -> dict:
    """A flat TOML file, or one whose only table is [table]. Relative paths in the `relative`
    fields (a string or a list of strings) are resolved against the config file's folder
    when they exist there."""
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

    def beside(v):
        if isinstance(v, str) and not Path(v).is_absolute() and not Path(v).exists() and (path.parent / v).exists():
            return str(path.parent / v)
        return v

    for key in relative:
        v = data.get(key)
        data[key] = [beside(x) for x in v] if isinstance(v, list) else beside(v)
        if v is None:
            del data[key]
    return data


def load_config(path: str | Path) -> SearchConfig:
    """A search config from TOML: flat, or one [search] table; plugin and task paths are
    relative to it."""
    data = read_toml(path, "search", relative=("plugins",))
    if "task" in data:
        from causal.tasks import spec_beside

        data["task"] = spec_beside(data["task"], Path(path).parent)
    return SearchConfig.from_dict(data)


def _safe_name(s: str) -> bool:
    return bool(s) and all(ch.isalnum() or ch in "-_." for ch in s) and not s.startswith(".")
