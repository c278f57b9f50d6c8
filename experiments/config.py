"""A search config: one TOML file, one dataclass. Its hash names the run unless it has a name.

Validation here is everything that can be checked without loading the model; what needs the
model (k against the hidden size, layers in range) is checked by AlignmentSearch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.errors import ConfigError

METHODS = ("das", "boundless")
CONTROLS = ("random_rotation", "vanilla", "untrained_model", "disjoint_split", "probe")
COMPONENTS = ("block_output", "attn_output", "mlp_output", "head_output")
PARAMETRIZATIONS = ("qr", "householder", "cayley", "matrix_exp")


@dataclass
class SearchConfig:
    # "zoo:<task>" (trained locally by experiments.zoo), a local HF directory, or a hub id.
    model: str
    task: str
    hypothesis: str | None = None  # default: the task's main hypothesis
    variables: list[str] | None = None  # default: the hypothesis' intermediate variables
    layers: list[int] | str = "all"
    positions: list[int | str] = field(default_factory=lambda: ["last"])
    components: list[str] = field(default_factory=lambda: ["block_output"])
    method: str = "das"
    k: int = 4  # rotated dimensions per variable (ignored by boundless)
    parametrization: str = "qr"
    epochs: int = 5
    steps: int | None = None  # if set, overrides epochs: exact optimizer steps per cell
    batch_size: int = 64
    lr: float = 1e-2
    n_train: int = 2000
    n_test: int = 500
    seed: int = 0
    controls: list[str] = field(default_factory=list)
    disjoint_on: list[str] | None = None  # inputs held out for the disjoint_split control
    # Counterfactuals in pairs sharing a base whose sources give different outputs, so rules
    # that read only the base stay at chance (causal.CounterfactualDataset.generate).
    contrastive: bool = False
    name: str | None = None
    device: str = "auto"
    dtype: str | None = None  # "float32" | "bfloat16" | "float16" for the frozen model
    device_map: str | None = None  # "auto" spreads a large model over GPUs (accelerate)
    model_seed: int = 0  # seed of the zoo model when model = "zoo:<task>"

    def __post_init__(self):
        self.validate()

    # ---------------------------------------------------------------- validation
    def validate(self) -> None:
        def need(cond: bool, fieldname: str, msg: str):
            if not cond:
                raise ConfigError(f"config field {fieldname!r}: {msg}")

        need(isinstance(self.model, str) and self.model.strip() != "", "model",
             "give 'zoo:<task>', a local Hugging Face model directory, or a hub id")
        need(isinstance(self.method, str) and self.method in METHODS, "method",
             f"got {self.method!r}; allowed values: {list(METHODS)}")
        need(_is_int(self.k) and self.k >= 1, "k", f"got {self.k!r}; use a positive integer")
        need(self.parametrization in PARAMETRIZATIONS, "parametrization",
             f"got {self.parametrization!r}; allowed values: {list(PARAMETRIZATIONS)}")
        for name in ("epochs", "batch_size", "n_train", "n_test"):
            v = getattr(self, name)
            need(_is_int(v) and v >= 1, name, f"got {v!r}; use a positive integer")
        need(self.steps is None or (_is_int(self.steps) and self.steps >= 1), "steps",
             f"got {self.steps!r}; use a positive integer or leave it out to use epochs")
        need(isinstance(self.lr, (int, float)) and not isinstance(self.lr, bool) and self.lr > 0,
             "lr", f"got {self.lr!r}; use a positive number such as 1e-2")
        need(_is_int(self.seed), "seed", f"got {self.seed!r}; use an integer")
        need(_is_int(self.model_seed), "model_seed", f"got {self.model_seed!r}; use an integer")

        if isinstance(self.layers, str):
            need(self.layers == "all", "layers", f"got {self.layers!r}; use \"all\" or a list of layer indices")
        else:
            need(isinstance(self.layers, list), "layers", "use \"all\" or a list of layer indices")
            need(len(self.layers) > 0, "layers", "the layer list is empty; list at least one layer or use \"all\"")
            need(all(_is_int(x) for x in self.layers), "layers",
                 f"got {self.layers!r}; layers are integers (negative counts from the last)")
        need(isinstance(self.positions, list) and len(self.positions) > 0, "positions",
             "list at least one position: an index (negative counts from the end) or a task position name such as \"last\"")
        need(all(_is_int(p) or isinstance(p, str) for p in self.positions), "positions",
             f"got {self.positions!r}; each position is an integer or a name")
        need(isinstance(self.components, list) and len(self.components) > 0, "components",
             f"list at least one of {list(COMPONENTS)}")
        for c in self.components:
            need(c in COMPONENTS, "components", f"unknown component {c!r}; allowed values: {list(COMPONENTS)}")
        need(isinstance(self.controls, list), "controls", f"use a list drawn from {list(CONTROLS)}")
        for c in self.controls:
            need(c in CONTROLS, "controls", f"unknown control {c!r}; allowed values: {list(CONTROLS)}")
        need(self.variables is None or (isinstance(self.variables, list) and len(self.variables) > 0
                                        and all(isinstance(v, str) for v in self.variables)),
             "variables", "list at least one variable name, or leave the field out to use the hypothesis' intermediate variables")
        need(self.disjoint_on is None or (isinstance(self.disjoint_on, list) and self.disjoint_on), "disjoint_on",
             "list the input variables whose held-out values the disjoint split keeps out of training")
        need(isinstance(self.contrastive, bool), "contrastive",
             f"got {self.contrastive!r}; use true or false")
        need(self.name is None or (isinstance(self.name, str) and _safe_name(self.name)), "name",
             f"got {self.name!r}; use letters, digits, '-', '_' or '.'")
        need(self.dtype in (None, "float32", "bfloat16", "float16"), "dtype",
             f"got {self.dtype!r}; allowed values: ['float32', 'bfloat16', 'float16']")
        need(self.device_map in (None, "auto"), "device_map", f"got {self.device_map!r}; allowed values: ['auto']")
        self._validate_task()

    def _validate_task(self) -> None:
        from causal.tasks import TASK_NAMES, get_task

        if self.task not in TASK_NAMES:
            raise ConfigError(f"config field 'task': unknown task {self.task!r}; allowed values: {list(TASK_NAMES)}")
        task = get_task(self.task)
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
            if isinstance(p, str) and p not in task.positions:
                raise ConfigError(f"config field 'positions': task {self.task!r} has no position {p!r}; "
                                  f"allowed values: integers or {task.positions}")

    # ---------------------------------------------------------------- identity
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Stable over key order; the name does not change the hash of what is computed."""
        d = self.to_dict()
        d.pop("name")
        if not d["contrastive"]:  # added later: configs that leave it out keep their hash (and run name)
            d.pop("contrastive")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def run_name(self) -> str:
        return self.name or f"{self.task}-{self.hash()}"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SearchConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; allowed fields: {sorted(known)}")
        for required in ("model", "task"):
            if required not in d:
                raise ConfigError(f"config field {required!r} is missing; every search config names a model and a task")
        try:
            return cls(**d)
        except TypeError as e:  # a wrong type that our checks did not name
            raise ConfigError(f"bad config: {e}") from None


def load_config(path: str | Path) -> SearchConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist; pass the path of a .toml search config "
                          f"(examples in experiments/configs/)")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {e}") from None
    # Allow either a flat file or a [search] table.
    if set(data) == {"search"} and isinstance(data["search"], dict):
        data = data["search"]
    return SearchConfig.from_dict(data)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _safe_name(s: str) -> bool:
    return bool(s) and all(ch.isalnum() or ch in "-_." for ch in s) and not s.startswith(".")
