"""The search config: one TOML file, one pydantic model (`SearchConfig`), each field declared
once with its documentation; `AlignmentSearch(model, task, **fields)` takes the same fields, and
`dii search --help` and the app's form read these descriptions. A method's own settings are
not fields here: each method declares them (its `Options`), and a config sets them in
[method_options.<method>].

Validation here is everything that can be checked without loading the model; what needs the
model (k against the hidden size, layers in range) is checked by AlignmentSearch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from experiments.config import TASK_OPTIONS_HELP, WorkbenchConfig, read_toml
from experiments.errors import ConfigError
from experiments.schedule import LR_SCHEDULES

COMPONENTS = ("block_output", "attn_output", "mlp_output", "head_output")
PARAMETRIZATIONS = ("qr", "householder", "cayley", "matrix_exp")
LOSS_OVER = ("vocabulary", "answers")
K_AUTO_MIN = 4  # k = 'auto' gives a variable max(K_AUTO_MIN, its number of values) dimensions
# (old top-level field, the methods that read it, its name in their options, its old default)
LEGACY_OPTIONS = (("temperature", ("boundless",), "temperature", [50.0, 0.1]),
                  ("dbm_sparsity", ("dbm", "dbm_pca"), "sparsity", 0.05))


class SearchConfig(WorkbenchConfig):
    """A Distributed Alignment Search: the model, the task, the grid of sites, the method and
    its controls, the training budget and the data. `AlignmentSearch` takes the same fields."""

    HASH_HISTORY: ClassVar[dict[str, Any]] = {
        "task_options": {}, "contrastive": None, "plugins": [], "seeds": None, "vary_model_seed": False,
        "lr_schedule": "constant", "validation_fraction": 0.0, "check_model_accuracy": True,
        "loss_over": "vocabulary",  # runs before the option trained over the vocabulary
        "method_options": {}, "screen_top": None, "screen_steps": None,
        "train_together": True,  # the same computation (to float rounding) as the cells one at a time
    }
    model: str = Field(description="'zoo' (a small model trained here on this task, cached), 'zoo:<built-in "
                                   "task>', a local Hugging Face model directory, or a hub id")
    task: str = Field(description="the hypothesis and prompts: a built-in task name, a task file ('my_task.toml'), "
                                  "or a builder ('my_tasks.py:build', 'package.module:build'); paths are relative "
                                  "to the config")
    task_options: dict[str, Any] = Field(default_factory=dict, description=TASK_OPTIONS_HELP)
    hypothesis: str | None = Field(None, description="which of the task's hypotheses; default: its main one")
    variables: list[str] | None = Field(None, description="variables to align; default: the hypothesis' "
                                                          "intermediate variables")
    layers: list[int] | str = Field("all", description='"all", a list of layer indices (negative from the last), or '
                                    'ranges as text: "0-29", "16-24:2" (every second), "0-29:3, 29", "every 3"')
    positions: list[int | str] = Field(default_factory=lambda: ["last"],
                                       description="token positions: indices or task position names such as \"last\" or a "
                                                   "template field; a field of several tokens is read at its last token, "
                                                   "or 'field:first' / 'field:<offset>'")
    components: list[str] = Field(default_factory=lambda: ["block_output"],
                                  description=f"site components, from {list(COMPONENTS)}")
    method: str = Field("das", description="the main alignment method (a registered featurizer: das, boundless, "
                                           "dbm, dbm_pca, pca, or a plugin's)")
    k: int | str = Field("auto", description="dimensions per variable for the methods that use k (das, pca, "
                         "random_rotation): an integer, or 'auto' = max(4, the variable's number of values), which "
                         "finds a many-valued variable that k = 4 misses (capped so every variable fits the site)")
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
    method_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="settings of one method, as [method_options.<method>] tables: each "
        "method declares its own (`dii methods` lists them), e.g. [method_options.boundless] temperature = [50, 0.1]")
    plugins: list[str] = Field(default_factory=list, description="method files to load (@register'ed "
                               "AlignmentMethod subclasses), relative to the config file")
    screen_top: int | float | None = Field(
        None, description="pre-screening: rank every site by a short training of the main method (screen_steps) on "
        "part of the training examples, judged on the rest, then train only each variable's top sites: a count "
        "(e.g. 4) or a share of the sites (e.g. 0.25); the table keeps every site's screening score")
    screen_steps: int | None = Field(None, description="with screen_top: the screening steps per site, at a quarter "
                                     "of batch_size (default 20)")
    train_together: bool = Field(True, description="cells of DAS that share a layer (other seeds; other positions "
                                 "on models without a KV cache) train in one batched step; the same IIA as one at a "
                                 "time, to float rounding")
    check_model_accuracy: bool = Field(True, description="refuse to search a model whose accuracy on the task's "
                                       "factual prompts is within 0.1 of chance (it cannot do the task, so every IIA "
                                       "would be noise); false searches it anyway")

    # ---------------------------------------------------------------- validation
    def validate_fields(self) -> None:
        from experiments.search.methods import load_plugins, method_names

        need = self.need

        need(self.model.strip() != "", "model", "give 'zoo:<task>', a local Hugging Face model directory, or a hub id")
        load_plugins(self.plugins)
        featurizers = method_names("featurizer")
        need(self.method in featurizers, "method", f"got {self.method!r}; allowed values: {featurizers}")
        need(self.k == "auto" if isinstance(self.k, str) else self.k >= 1, "k",
             f"got {self.k!r}; use a positive integer or 'auto'")
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
            try:
                parse_layers(self.layers, None)
            except ValueError as e:
                need(False, "layers", str(e))
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
        need(self.dtype in (None, "float32", "bfloat16", "float16"), "dtype",
             f"got {self.dtype!r}; allowed values: ['float32', 'bfloat16', 'float16']")
        need(self.device_map in (None, "auto"), "device_map", f"got {self.device_map!r}; allowed values: ['auto']")
        self._validate_method_options()
        need(self.seeds is None or (len(self.seeds) > 0 and len(set(self.seeds)) == len(self.seeds)), "seeds",
             f"got {self.seeds!r}; list distinct integer seeds, e.g. [0, 1, 2], or leave it out for one run at 'seed'")
        need(not self.vary_model_seed or self.seeds is not None, "vary_model_seed", "set 'seeds' too")
        top = self.screen_top
        need(top is None or (isinstance(top, int) and top >= 1) or (isinstance(top, float) and 0 < top < 1),
             "screen_top", f"got {top!r}; give a count of sites (an integer >= 1) or a share in (0, 1)")
        need(self.screen_steps is None or self.screen_steps >= 1, "screen_steps", f"got {self.screen_steps!r}; use a "
             "positive integer, or leave it out")
        need(self.screen_steps is None or top is not None, "screen_steps", "set screen_top too (screening is off)")
        self._validate_task()

    validate = validate_fields  # the name older callers use

    def _validate_method_options(self) -> None:
        """Each [method_options.<name>] table belongs to a method this config runs, and is
        checked by that method's own Options model."""
        from experiments.search.methods import get_method

        used = [self.method, *self.controls]
        for name, table in self.method_options.items():
            self.need(name in used, "method_options",
                      f"[method_options.{name}] is set, but {name!r} is neither the method nor a control ({used})")
            get_method(name).options_from(table, where=f"{self.KIND} field 'method_options'")

    def options_for(self, method: str):
        """The validated options of `method` (its defaults where the config sets none)."""
        from experiments.search.methods import get_method

        return get_method(method).options_from(self.method_options.get(method, {}))

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
    def default_run_name(self) -> str:
        """'<task>-<hash>'; a task named by a path ('my_tasks.py:build') goes by the task's own name."""
        import re

        what = self.task if self.task.replace("_", "").isalnum() else self.load_task().name
        return f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', what).strip('-.') or 'task'}-{self.hash()}"

    def auto_k(self) -> dict[str, int]:
        """k per variable under k = 'auto': max(K_AUTO_MIN, the variable's number of values)
        (before any cap by the site's width, which AlignmentSearch applies)."""
        hyp = self.load_task().hypothesis(self.hypothesis)
        variables = self.variables or list(hyp.intermediates)
        return {v: max(K_AUTO_MIN, len(hyp.variables[v])) for v in variables}

    def hash_dict(self) -> dict[str, Any]:
        """Options that were top-level fields before methods owned them hash as they did then
        (at their old default, not at all), so a run made before resumes under its own hash.
        k = 'auto' hashes as what it computes: 4 for two-valued variables, as k's old default."""
        d = super().hash_dict()
        if d.get("k") == "auto":
            ks = set(self.auto_k().values())
            d["k"] = ks.pop() if len(ks) == 1 else self.auto_k()
        options = {m: dict(o) for m, o in (d.get("method_options") or {}).items()}
        for old, owners, new, old_default in LEGACY_OPTIONS:
            values = [options[m].pop(new) for m in owners if new in options.get(m, {})]
            if values and values[0] != old_default:
                d[old] = values[0]
        options = {m: o for m, o in options.items() if o}
        if options:
            d["method_options"] = options
        else:
            d.pop("method_options", None)
        return d

    @classmethod
    def upgrade(cls, d: dict[str, Any]) -> dict[str, Any]:
        """Configs from before methods owned their options: a top-level `temperature` (boundless)
        or `dbm_sparsity` (dbm, dbm_pca) moves into [method_options] for the methods that run."""
        d = super().upgrade(d)
        controls = d.get("controls") if isinstance(d.get("controls"), list) else []
        used = [d.get("method", "das"), *controls]
        for old, owners, new, _ in LEGACY_OPTIONS:
            if old in d:
                value = d.pop(old)
                for owner in owners:
                    if owner in used:
                        d.setdefault("method_options", {}).setdefault(owner, {}).setdefault(new, value)
        return d


def parse_layers(spec: str, n_layers: int | None) -> list[int]:
    """Layers from text, in order and once each: "all"; items "a", "a-b" (inclusive) or "a-b:step",
    separated by commas or spaces; "every N" (0, N, 2N, ... up to the last layer). With n_layers
    None only the syntax is checked."""
    text = spec.strip().lower()
    if text == "all":
        return list(range(n_layers or 0))
    out: list[int] = []
    words = text.replace(",", " ").split()
    if len(words) == 2 and words[0] == "every" and words[1].isdigit() and int(words[1]) > 0:
        return list(range(0, n_layers or 0, int(words[1])))
    for item in words:
        body, _, step = item.partition(":")
        lo, dash, hi = body.lstrip("-").partition("-")
        lo = ("-" if body.startswith("-") else "") + lo
        try:
            a, b, k = int(lo), int(hi) if dash else None, int(step) if step else 1
        except ValueError:
            raise ValueError(f"got {spec!r}; write \"all\", layers and ranges such as \"0-29\", \"16-24:2\" or "
                             "\"0, 4, 8\", or \"every 3\"") from None
        if k < 1 or (b is not None and b < a):
            raise ValueError(f"{item!r} in {spec!r}: a range runs low-high with a step >= 1, e.g. \"16-24:2\"")
        out.extend([a] if b is None else range(a, b + 1, k))
    if not out:
        raise ValueError(f"got {spec!r}: it names no layer")
    if n_layers is not None:
        for layer in out:
            if not -n_layers <= layer < n_layers:
                raise ValueError(f"layer {layer} does not exist; the model has layers 0..{n_layers - 1} "
                                 "(negative counts from the last)")
        out = [x % n_layers for x in out]
    return sorted(set(out))


field_help = SearchConfig.field_help  # the search config's field documentation, for the CLI and the app
fields_help = SearchConfig.fields_help


def load_config(path: str | Path) -> SearchConfig:
    """A search config from TOML: flat, or one [search] table; plugin and task paths are
    relative to it."""
    return SearchConfig.from_dict(read_toml(path, "search", relative=("plugins", "model")))
