"""The contract every alignment method and control keeps.

A method says what it trains (`trains`), on which prepared split it runs (`split`: "main",
"disjoint" for held-out input values, "untrained" for the randomly initialised model), and
whether it is a featurizer a user aligns with or a control beside one (`role`). It either
implements the three steps

    fit(cell, variables) -> an intervention module (h_base, h_sources, active) -> h,
                            or (h_base, h_source) -> h when `per_variable`; None if stopped
    k_of(cell, module)   -> the dimensions it intervenes on
    artifact(cell, module, variables, iia) -> a Subspace to save, or None

and the default `run` evaluates it on every intervened-variable set, or it overrides `run`
(the probe does). `CellRun` hands a method everything it may use: the split, the site, the
config, its own options (`cell.options`), a seeded generator, and the shared training loop
and evaluation.

A method owns its settings: `uses_k` (it reads the config's k, which the search then checks
against each site's width) and `Options`, a pydantic model of its own fields that a config
sets in [method_options.<name>]; `dii methods`, `dii search --help` and the app's form read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from experiments.errors import ConfigError
from experiments.schedule import lr_scheduler
from experiments.search.stats import FEW_TEST_EXAMPLES, floor_of, wilson_interval
from interventions import RotatedSubspace, Site, Subspace


@dataclass
class CellOutput:
    rows: list[dict]
    curve: list[float] = field(default_factory=list)
    subspaces: dict[tuple[str, str], Subspace] = field(default_factory=dict)


class Minibatches:
    """The training rows in minibatches, reshuffled from `generator` at every epoch (a cell's
    batch order, the same whether it trains alone or together with others)."""

    def __init__(self, rows: torch.Tensor, batch_size: int, generator: torch.Generator):
        self.rows, self.batch_size, self.generator = rows, batch_size, generator
        self.order, self.pos = torch.empty(0, dtype=torch.long), 0

    def epoch_ends(self) -> bool:
        """Whether the next minibatch starts a fresh epoch."""
        return self.pos + min(self.batch_size, self.rows.numel()) > self.order.numel()

    def next(self) -> torch.Tensor:
        if self.epoch_ends():
            self.order, self.pos = torch.randperm(self.rows.numel(), generator=self.generator), 0
        batch = self.rows[self.order[self.pos:self.pos + self.batch_size].to(self.rows.device)]
        self.pos += self.batch_size
        return batch


@dataclass
class CellRun:
    """One method at one site on one prepared split."""

    search: Any  # the AlignmentSearch: config, variables, hypothesis_name, intervened_sets()
    split: Any  # experiments.prepared.PreparedSplit
    cell_key: str
    method: str
    site: Site
    generator: torch.Generator
    report: Callable[[int, int, float], None] = lambda step, n_steps, loss: None
    should_stop: Callable[[], bool] | None = None
    keep_artifacts: bool = True
    # Screening trains on part of the training examples and judges on the rest, for fewer steps.
    train_override: torch.Tensor | None = None
    test_override: torch.Tensor | None = None
    steps_override: int | None = None
    batch_override: int | None = None
    options_of: str | None = None  # a control that runs another method (the main one) reads that method's options

    @property
    def train_rows(self) -> torch.Tensor:
        """The training examples (kept rows of the split) this cell trains on."""
        return self.split.train_rows if self.train_override is None else self.train_override

    @property
    def test_rows(self) -> torch.Tensor:
        """The examples this cell's rows are scored on: the split's test rows, except in screening."""
        return self.split.test_rows if self.test_override is None else self.test_override

    @property
    def config(self):
        return self.search.config

    @property
    def options(self):
        """This cell's method's own settings (its Options, from [method_options.<method>])."""
        return self.config.options_for(self.options_of or self.method)

    @property
    def variables(self) -> list[str]:
        return list(self.search.variables)

    @property
    def d(self) -> int:
        return self.split.model.site_dim(self.site)

    def derived(self, **changes) -> "CellRun":
        return replace(self, **changes)

    def steps(self, rows: torch.Tensor | None = None) -> int:
        """Exact config.steps, else config.epochs passes over `rows` (the kept training rows)."""
        c = self.config
        if self.steps_override is not None:
            return self.steps_override
        n = (self.train_rows if rows is None else rows).numel()
        return c.steps or c.epochs * math.ceil(n / c.batch_size)

    def k_for(self, variables: list[str]) -> int:
        """The dimensions these variables get together (each its k: the config's, or 'auto')."""
        return sum(self.search.ks[v] for v in variables)

    def new_rotation(self) -> RotatedSubspace:
        """k rows per variable, as disjoint slices of one rotation, from this cell's seed."""
        slices, start = {}, 0
        for v in self.variables:
            slices[v] = (start, start + self.search.ks[v])
            start += self.search.ks[v]
        return RotatedSubspace(self.d, start, self.config.parametrization, slices=slices,
                               generator=self.generator).to(self.split.model.device)

    # ------------------------------------------------------------ the shared training loop
    def train(self, module: torch.nn.Module, rows: torch.Tensor, steps: int, variable: str | None = None,
              before_step: Callable[[int, int], None] | None = None,
              penalty: Callable[[], torch.Tensor] | None = None, step_offset: int = 0,
              total_steps: int | None = None) -> list[float] | None:
        """Adam on the counterfactual cross-entropy (+ penalty()) over minibatches of `rows`,
        with the config's learning-rate schedule and, with validation_fraction, early stopping
        (the state with the best validation IIA, checked once per epoch, is kept); the loss
        curve, or None if should_stop fired."""
        c, split = self.config, self.split
        params = [p for p in module.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=c.lr)
        sched = lr_scheduler(opt, c.lr_schedule, steps)
        fn = split.dii_fn(self.site, module, variable)
        rows, val_rows = self._hold_out(rows)
        best = (-1.0, None)
        curve: list[float] = []
        batches = Minibatches(rows, self.batch_override or c.batch_size, self.generator)
        module.train()
        for step in range(steps):
            if self.should_stop is not None and step % 10 == 0 and self.should_stop():
                return None
            if batches.epoch_ends() and val_rows is not None and step > 0:
                best = self._keep_best(module, fn, val_rows, best)
            batch_rows = batches.next()
            if before_step is not None:
                before_step(step, steps)
            loss = split.loss(self.site, batch_rows, fn)
            if penalty is not None:
                loss = loss + penalty()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            curve.append(round(float(loss.detach()), 6))
            self.report(step_offset + step + 1, total_steps or steps, curve[-1])
        if val_rows is not None:
            best = self._keep_best(module, fn, val_rows, best)
            module.load_state_dict(best[1])
        module.eval()
        return curve

    def _hold_out(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        frac = self.config.validation_fraction
        n_val = int(round(frac * rows.numel()))
        if frac <= 0 or n_val == 0:
            return rows, None
        perm = torch.randperm(rows.numel(), generator=self.generator).to(rows.device)
        return rows[perm[n_val:]], rows[perm[:n_val]]

    def _keep_best(self, module, fn, val_rows, best):
        was_training = module.training
        module.eval()
        iia = float(self.split.correct(self.site, val_rows, fn).float().mean())
        module.train(was_training)
        if iia > best[0]:
            return iia, {k: v.detach().clone() for k, v in module.state_dict().items()}
        return best

    def train_variable(self, module: torch.nn.Module, variable: str, **hooks):
        """Train a per-variable module on its variable's examples: config steps each, reported
        as one run of steps over all the variables in turn. (module, curve), or None if stopped."""
        steps = self.steps()
        rows = self.split.rows_for_set(self.train_rows, [variable])
        curve = self.train(module, rows, steps, variable=variable, step_offset=self.variables.index(variable) * steps,
                           total_steps=steps * len(self.variables), **hooks)
        return None if curve is None else (module, curve)

    # ------------------------------------------------------------ evaluation and rows
    def evaluate(self, module, k: int | None, variable: str | None = None, final_loss: float | None = None,
                 sets: list[list[str]] | None = None, **extra) -> list[dict]:
        """IIA on the kept test examples of each intervened-variable set (only [variable]'s
        with a per-variable module). k None: each set's own (`k_for`, the rotation's slices)."""
        split = self.split
        if sets is None:
            sets = [[variable]] if variable else self.search.intervened_sets()
        fn = split.dii_fn(self.site, module, variable)
        rows = []
        for vs in sets:
            test = split.rows_for_set(self.test_rows, vs)
            predicted = split.answers(self.site, test, fn)
            right = predicted == split.target[test]
            fields = iia_fields(right, test, split.floor_rules(test, vs), split.data)
            fields["test_predicted"] = predicted.tolist()  # what the detail view shows, with no model
            rows.append(self.row("+".join(vs), fields.pop("iia"), k=self.k_for(vs) if k is None else k,
                                 final_loss=final_loss,
                                 n_train=int(split.rows_for_set(self.train_rows, vs).numel()), **extra, **fields))
        return rows

    def row(self, variable: str, iia, **extra) -> dict:
        s = self.site
        return {"cell": self.cell_key, "site": s.key, "layer": s.layer, "position": s.position,
                "component": s.component, "variable": variable, "method": self.method, "iia": iia,
                "n_train_total": self.split.n_train_total, "n_test_total": self.split.n_test_total,
                "seed": self.config.seed, "model_seed": self.config.model_seed, **extra}


    def subspace(self, rotation: torch.Tensor, variables: list[str], iia, slices=None, **extra) -> Subspace:
        """A Subspace artifact with this cell's provenance."""
        c, m, s = self.config, self.split.model, self.site
        return Subspace(rotation=rotation.detach().float().cpu(), variables=list(variables), slices=slices, iia=iia,
                        model_name=m.name, model_fingerprint=m.fingerprint, hidden_size=self.d, site=s.key,
                        layer=s.layer, component=s.component, position=s.position,
                        parametrization=c.parametrization, task=c.task, hypothesis=self.search.hypothesis_name,
                        extra={"method": self.method, "seed": c.seed, **extra, "base_model_revision": m.revision})


class MethodOptions(BaseModel):
    """The base of a method's own settings: strict types, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class NoOptions(MethodOptions):
    """A method without settings of its own."""


TRAITS = ("role", "trains", "split", "per_variable", "uses_k", "default_control", "together")


class AlignmentMethod:
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    role: ClassVar[str] = "featurizer"  # "featurizer": something to align with; "control": a baseline beside one
    trains: ClassVar[bool] = True
    split: ClassVar[str] = "main"  # "main" | "disjoint" | "untrained"
    per_variable: ClassVar[bool] = False  # one module per variable, evaluated on that variable's examples
    uses_k: ClassVar[bool] = False  # reads the config's k: the search checks it against each site's width
    default_control: ClassVar[bool] = False  # a control new searches run unless told otherwise
    together: ClassVar[bool] = False  # fit() is start() then a plain cell.train(): cells may train together
    Options: ClassVar[type[BaseModel]] = NoOptions  # its own settings, [method_options.<name>] in a config

    def __init_subclass__(cls, **traits):
        """Traits may be given on the class line: `class Vanilla(AlignmentMethod, role="control", trains=False)`."""
        super().__init_subclass__()
        for trait, value in traits.items():
            if trait not in TRAITS:
                raise ConfigError(f"method class {cls.__name__}: unknown trait {trait!r}; traits: {list(TRAITS)}")
            setattr(cls, trait, value)

    @classmethod
    def options_from(cls, table: dict, where: str = "") -> BaseModel:
        """The method's Options from a config table; a bad one is a ConfigError naming the
        method and the field."""
        if not isinstance(table, dict):
            raise ConfigError(f"{where or 'method_options'}: [method_options.{cls.name}] is a table of settings, "
                              f"not {table!r}")
        try:
            return cls.Options(**table)
        except ValidationError as e:
            err = e.errors()[0]
            key = ".".join(str(x) for x in err.get("loc", ())) or "?"
            allowed = cls.describe_options() or "none"
            raise ConfigError(f"{where or 'method_options'}: [method_options.{cls.name}] {key}: {err.get('msg')} "
                              f"(got {err.get('input')!r}); {cls.name}'s options: {allowed}") from None

    @classmethod
    def describe_options(cls) -> str:
        """"name = default (description); ..." for help texts."""
        return "; ".join(f"{n} = {f.get_default(call_default_factory=True)!r}"
                         + (f" ({f.description})" if f.description else "")
                         for n, f in cls.Options.model_fields.items())

    def fit(self, cell: CellRun, variables: list[str]):
        raise NotImplementedError(f"{type(self).__name__} implements neither fit() nor run()")

    def k_of(self, cell: CellRun, module) -> int:
        return int(getattr(module, "k", 0))

    def artifact(self, cell: CellRun, module, variables: list[str], iia) -> Subspace | None:
        """By default the module's kept rows (`selected_rows()`), if it has them and keeps any."""
        if not hasattr(module, "selected_rows") or self.k_of(cell, module) == 0:
            return None
        return cell.subspace(module.selected_rows(), variables, iia)

    def start(self, cell: CellRun, variables: list[str]) -> torch.nn.Module:
        """A method with `together` builds its untrained module here and trains it with
        cell.train(module, cell.train_rows, cell.steps()) and nothing else, so that cells of it
        sharing a layer can train in one batched step (experiments/search/together.py)."""
        raise NotImplementedError(f"{type(self).__name__} has together = True but no start()")

    def run(self, cell: CellRun) -> CellOutput | None:
        out = CellOutput(rows=[])
        groups = [[v] for v in cell.variables] if self.per_variable else [cell.variables]
        for vs in groups:
            fitted = self.fit(cell, vs)
            if fitted is None:
                return None
            self.finish(cell, vs, fitted, out)
        return out

    def finish(self, cell: CellRun, variables: list[str], fitted, out: CellOutput) -> CellOutput:
        """Evaluate a fitted module (module, or (module, curve)) on its variable sets and add its
        rows, curve and artifacts to `out`."""
        module, curve = fitted if isinstance(fitted, tuple) else (fitted, [])
        out.curve += curve
        rows = cell.evaluate(module, k=self.k_of(cell, module), variable=variables[0] if self.per_variable else None,
                             final_loss=curve[-1] if curve else None)
        out.rows += rows
        if cell.keep_artifacts:
            iia = {r["variable"]: r["iia"] for r in rows}
            art = self.artifact(cell, module, variables, iia if len(variables) > 1 else iia.get(variables[0]))
            if isinstance(art, dict):
                out.subspaces.update(art)
            elif art is not None:
                out.subspaces[(cell.site.key, "+".join(variables))] = art
        return out


class MainMethodElsewhere(AlignmentMethod, role="control"):
    """A control that runs the search's main method on another split (`split`), keeping no
    artifacts: untrained_model and disjoint_split."""

    def run(self, cell: CellRun) -> CellOutput | None:
        from experiments.search.methods import get_method

        return get_method(cell.config.method).run(cell.derived(keep_artifacts=False, options_of=cell.config.method))


def iia_fields(right: torch.Tensor, test: torch.Tensor, rules: dict[str, float], data: str) -> dict:
    """What every IIA row carries: n, the 95% Wilson interval, the floor of its test set (the
    best trivial rule) and whether the interval clears it, and the per-example outcomes the
    paired test against a control reads."""
    n = int(test.numel())
    if n == 0:
        return {"iia": None, "n_test": 0}
    k = int(right.sum())
    low, high = wilson_interval(k, n)
    floor, rule = floor_of(rules)
    out = {"iia": k / n, "n_test": n, "iia_low": low, "iia_high": high, "floor": floor, "floor_rule": rule,
           **{f"floor_{name}": v for name, v in rules.items()}, "above_floor": low > floor,
           "data": data, "test_index": test.tolist(), "test_correct": "".join("1" if x else "0" for x in right.tolist())}
    if n < FEW_TEST_EXAMPLES:
        out["warning"] = (f"only {n} test examples in this variable set: the interval is wide; "
                          f"raise n_test for >= {FEW_TEST_EXAMPLES}")
    return out
