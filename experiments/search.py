"""Distributed Alignment Search over a grid of sites, sklearn-style:

    search = AlignmentSearch(model, "hierarchical_equality", layers=[0, 1, 2], k=4, controls=["random_rotation"])
    results = search.run()          # or run(run_dir="runs/x") to write a run directory
    results.best("V1")

One sweep cell is (method, site). For each site the main method ("das" or "boundless")
trains one rotation: several variables of the hypothesis are disjoint slices of it,
trained jointly on examples that intervene on [V1], [V2], [V1, V2], ... Controls are more
cells of the same shape (controls.py), so every result is one row of one table.

Why it is fast: the model is frozen, so each (model, split, position) is prepared once
(SuffixRunner.prepare: one forward over every distinct input, keeping the KV prefix before
the intervened token and the activations at every swept site). Sources are those same
activations, so a training step is one suffix forward and backward above the site.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import time
import zlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F

from causal import CounterfactualDataset, get_task
from experiments.config import CONTROLS, METHODS, SearchConfig
from experiments.errors import ConfigError
from interventions import (
    BoundlessSubspace,
    Model,
    Prepared,
    RotatedSubspace,
    Site,
    Subspace,
    SuffixRunner,
    answer_ids,
    encode,
    load_model,
)

PREPARE_CHUNK = 256  # inputs per prepare forward
EVAL_BATCH = 512


# ------------------------------------------------------------------ public shapes
@dataclass(frozen=True)
class Cell:
    """One independent unit of a sweep: a method (or control) at a site."""

    method: str
    site: Site

    @property
    def key(self) -> str:
        return f"{self.method}__{self.site.key}"


@dataclass
class Progress:
    """What progress callbacks receive. event: "cell_start", "step", "cell_done", "cell_skipped"."""

    event: str
    cell: str
    cell_index: int
    n_cells: int
    step: int = 0
    n_steps: int = 0
    loss: float = float("nan")
    rows: list[dict] | None = None
    is_main: bool = True  # False on torchrun ranks other than 0 (the CLI draws bars on rank 0 only)


@dataclass
class SearchResults:
    rows: list[dict]
    curves: dict[str, list[float]] = field(default_factory=dict)
    subspaces: dict[tuple[str, str], Subspace] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    run_dir: Path | None = None
    complete: bool = True  # False when should_stop ended the run early

    def table(self):
        import pandas as pd

        return pd.DataFrame([{k: v for k, v in r.items() if k != "curve"} for r in self.rows])

    def rows_for(self, variable: str | None = None, method: str | None = None) -> list[dict]:
        return [r for r in self.rows if (variable is None or r["variable"] == variable)
                and (method is None or r["method"] == method)]

    def iia(self, site: Site | str, variable: str, method: str = "das") -> float | None:
        key = site.key if isinstance(site, Site) else site
        hits = [r for r in self.rows_for(variable, method) if r["site"] == key]
        return hits[0]["iia"] if hits else None

    def best(self, variable: str, method: str | None = None) -> dict | None:
        method = method or self.manifest.get("config", {}).get("method", "das")
        rows = [r for r in self.rows_for(variable, method) if r.get("iia") is not None]
        return max(rows, key=lambda r: r["iia"]) if rows else None


# ------------------------------------------------------------------ the search
class AlignmentSearch:
    """Configure in the constructor; `run()` learns. See the module docstring.

    model: a loaded `Model`, a local HF directory, a hub id, or "zoo:<task>".
    layers: list of ints (negative from the last) or "all"; positions: ints or task
    position names ("last" by default); ignored for models without token positions.
    k: rotated dimensions per variable. method: "das" or "boundless".
    steps: exact optimizer steps per cell; else `epochs` passes over the kept train set.
    controls: any of "random_rotation", "vanilla", "untrained_model", "disjoint_split", "probe".
    contrastive: counterfactuals come in pairs sharing a base whose sources give different
    outputs, so IIA tests what the source contributes (see causal.dataset).
    """

    def __init__(
        self,
        model: Model | str,
        task: str,
        hypothesis: str | None = None,
        variables: list[str] | None = None,
        layers: list[int] | str = "all",
        positions: Iterable[int | str] = ("last",),
        components: Iterable[str] = ("block_output",),
        sites: list[Site] | None = None,
        method: str = "das",
        k: int = 4,
        parametrization: str = "qr",
        epochs: int = 5,
        steps: int | None = None,
        batch_size: int = 64,
        lr: float = 1e-2,
        n_train: int = 2000,
        n_test: int = 500,
        seed: int = 0,
        controls: Iterable[str] = (),
        disjoint_on: list[str] | None = None,
        contrastive: bool = False,
        device: str = "auto",
        dtype: str | None = None,
        device_map: str | None = None,
        model_seed: int = 0,
        temperature: tuple[float, float] = (50.0, 0.1),
        config: SearchConfig | None = None,
    ):
        self.config = config or SearchConfig(
            model=model if isinstance(model, str) else getattr(model, "name", "model"),
            task=task, hypothesis=hypothesis, variables=list(variables) if variables else None,
            layers=layers if isinstance(layers, str) else list(layers), positions=list(positions),
            components=list(components), method=method, k=k, parametrization=parametrization, epochs=epochs,
            steps=steps, batch_size=batch_size, lr=lr, n_train=n_train, n_test=n_test, seed=seed,
            controls=list(controls), disjoint_on=disjoint_on, contrastive=contrastive, device=device, dtype=dtype,
            device_map=device_map, model_seed=model_seed)
        self._model_arg = model
        self._explicit_sites = list(sites) if sites is not None else None
        self.temperature = temperature
        self.task = get_task(self.config.task)
        self.hypothesis = self.task.hypothesis(self.config.hypothesis)
        self.hypothesis_name = self.config.hypothesis or self.task.default_hypothesis
        self.variables = list(self.config.variables or self.hypothesis.intermediates)
        self._model: Model | None = None
        self._sites: list[Site] | None = None
        self._contexts: dict[str, _Context] = {}
        self._datasets: dict[str, tuple[CounterfactualDataset, CounterfactualDataset]] = {}
        self.timings: dict[str, float] = {}

    @classmethod
    def from_config(cls, config: SearchConfig, model: Model | None = None) -> "AlignmentSearch":
        c = config
        return cls(model if model is not None else c.model, c.task, config=c)

    # ---------------------------------------------------------------- the model and the grid
    @property
    def model(self) -> Model:
        if self._model is None:
            t0 = time.perf_counter()
            self._model = self._load(self._model_arg)
            self.timings["load_model_s"] = round(time.perf_counter() - t0, 3)
        return self._model

    def _load(self, spec) -> Model:
        if isinstance(spec, Model):
            return spec
        return load_model_spec(spec, self.config)

    @property
    def sites(self) -> list[Site]:
        """The swept sites, checked against the model (layers, components, k fits)."""
        if self._sites is None:
            self._sites = self._resolve_sites()
        return self._sites

    def _resolve_sites(self) -> list[Site]:
        m, c = self.model, self.config
        if self._explicit_sites is not None:
            sites = [m.check_site(s) for s in self._explicit_sites]
        else:
            if c.layers == "all":
                layers = list(range(m.n_layers))
            else:
                layers = []
                for layer in c.layers:
                    if not -m.n_layers <= layer < m.n_layers:
                        raise ConfigError(f"config field 'layers': layer {layer} does not exist; {m.name} has layers "
                                          f"0..{m.n_layers - 1} (negative counts from the last)")
                    layers.append(layer % m.n_layers)
            for comp in c.components:
                if comp not in m.components():
                    raise ConfigError(f"config field 'components': {m.name} has no {comp!r}; allowed values: {m.components()}")
            positions = c.positions if m.is_lm else [None]
            sites = [Site(layer, comp, pos) for comp in c.components for pos in positions for layer in layers]
        sites = list(dict.fromkeys(sites))
        need = self._rotated_dims()
        for s in sites:
            d = m.site_dim(s)
            if need > d:
                per = f" ({len(self.variables)} variables x k={c.k})" if len(self.variables) > 1 else ""
                raise ConfigError(f"config field 'k': {need} rotated dimensions{per} do not fit in site {s.key} of width {d}; "
                                  f"use k <= {d // max(1, len(self.variables))}")
        return sites

    def _rotated_dims(self) -> int:
        return self.config.k * len(self.variables) if self.config.method == "das" else 1

    def cells(self) -> list[Cell]:
        """Main method per site, then each control per site, in a fixed order."""
        c = self.config
        methods = [c.method]
        for ctrl in c.controls:
            methods.append({"untrained_model": "untrained_model", "disjoint_split": f"{c.method}_disjoint"}.get(ctrl, ctrl))
        return [Cell(m, s) for m in methods for s in self.sites]

    # ---------------------------------------------------------------- datasets and contexts
    def intervened_sets(self) -> list[list[str]]:
        v = self.variables
        sets = [[x] for x in v]
        if len(v) > 1 and self.config.method == "das":
            sets.append(list(v))
        return sets

    def datasets(self, kind: str = "random") -> tuple[CounterfactualDataset, CounterfactualDataset]:
        """(train, test); kind "random" or "disjoint" (test uses only held-out input values)."""
        if kind not in self._datasets:
            c = self.config
            t0 = time.perf_counter()
            full = CounterfactualDataset.generate(self.task, c.n_train + c.n_test, intervened=self.intervened_sets(),
                                                  seed=c.seed, hypothesis=self.hypothesis_name,
                                                  contrastive=c.contrastive)
            frac = c.n_test / (c.n_train + c.n_test)
            if kind == "random":
                split = full.split(test_fraction=frac, seed=c.seed)
            else:
                split = full.split(test_fraction=frac, disjoint_on=c.disjoint_on or list(self.hypothesis.inputs), seed=c.seed)
            self._datasets[kind] = split
            self.timings[f"dataset_{kind}_s"] = round(time.perf_counter() - t0, 3)
        return self._datasets[kind]

    def context(self, name: str) -> "_Context":
        """"main": the model on the random split; "disjoint": the disjoint split;
        "untrained": a randomly initialised model of the same architecture (no filtering)."""
        if name not in self._contexts:
            t0 = time.perf_counter()
            if name == "main":
                ctx = _Context(self, self.model, *self.datasets("random"), filter_correct=True)
            elif name == "disjoint":
                ctx = _Context(self, self.model, *self.datasets("disjoint"), filter_correct=True)
            elif name == "untrained":
                ctx = _Context(self, untrained_copy(self.model, self.config.seed), *self.datasets("random"),
                               filter_correct=False)
            else:
                raise KeyError(name)
            self._contexts[name] = ctx
            self.timings[f"context_{name}_s"] = round(time.perf_counter() - t0, 3)
        return self._contexts[name]

    # ---------------------------------------------------------------- running
    def manifest(self) -> dict:
        import nnsight
        import transformers

        from interventions.artifact import library_version

        m = self.model
        return {
            "config": self.config.to_dict(),
            "config_hash": self.config.hash(),
            "seed": self.config.seed,
            "task": self.config.task,
            "hypothesis": self.hypothesis_name,
            "variables": self.variables,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "nnsight": getattr(nnsight, "__version__", "unknown"), "dii-workbench": library_version(),
                         "python": platform.python_version()},
            "device": _device_name(m.device),
            "model": {"name": m.name, "fingerprint": m.fingerprint, "n_layers": m.n_layers, "hidden_size": m.hidden_size},
            "cells": [c.key for c in self.cells()],
            "n_cells": len(self.cells()),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def run(
        self,
        progress: Callable[[Progress], None] | None = None,
        run_dir: str | Path | None = None,
        resume: bool = False,
        should_stop: Callable[[], bool] | None = None,
        cells: list[Cell] | None = None,
        is_main: bool = True,
        start_store: bool = True,
        finish_store: bool = True,
    ) -> SearchResults:
        """Run every cell (or `cells`, a shard). With run_dir, each finished cell is saved
        as it completes and `resume` skips the ones already saved. should_stop() is polled
        between cells and between steps (the app's cancel button)."""
        from experiments.runs import RunStore

        started = time.perf_counter()
        all_cells = self.cells()
        cells = all_cells if cells is None else cells
        store = RunStore(run_dir) if run_dir is not None else None
        manifest = self.manifest()
        if store is not None and start_store:
            store.start({**manifest, "status": "running"}, resume=resume)
        done = store.finished_cells() if (store is not None and resume) else set()
        records = {r["cell"]: r for r in store.cell_records()} if done else {}

        rows: list[dict] = []
        curves: dict[str, list[float]] = {}
        subspaces: dict[tuple[str, str], Subspace] = {}
        complete = True
        try:
            for i, cell in enumerate(cells):
                if should_stop is not None and should_stop():
                    complete = False
                    break
                if cell.key in done:
                    rec = records[cell.key]
                    rows += rec["rows"]
                    curves.update(rec.get("curves", {}))
                    if progress:
                        progress(Progress("cell_skipped", cell.key, i, len(cells), rows=rec["rows"], is_main=is_main))
                    continue
                if progress:
                    progress(Progress("cell_start", cell.key, i, len(cells), is_main=is_main))
                out = self.run_cell(cell, progress=progress, cell_index=i, n_cells=len(cells), should_stop=should_stop,
                                    is_main=is_main)
                if out is None:  # stopped mid-cell: nothing of it is kept
                    complete = False
                    break
                cell_rows, curve, cell_subspaces = out
                rows += cell_rows
                if curve:
                    curves[cell.key] = curve
                subspaces.update(cell_subspaces)
                if store is not None:
                    store.record_cell(cell.key, cell_rows, {cell.key: curve} if curve else {}, cell_subspaces,
                                      merge=finish_store)
                if progress:
                    progress(Progress("cell_done", cell.key, i, len(cells), rows=cell_rows, is_main=is_main))
        except BaseException:  # Ctrl-C or an error: the saved cells stay valid and the run says so
            if store is not None and finish_store:
                store.merge(order=[c.key for c in all_cells])
                store.update_manifest(status="interrupted", timings=dict(self.timings))
            raise
        self.timings["run_s"] = round(time.perf_counter() - started, 3)
        manifest["timings"] = dict(self.timings)
        manifest["data"] = self._data_summary()
        manifest["status"] = "finished" if complete else "interrupted"
        if store is not None and finish_store:
            store.merge(order=[c.key for c in all_cells])
            n_done = len(store.finished_cells())
            status = "finished" if n_done >= len(all_cells) else "interrupted"
            store.update_manifest(status=status, timings=manifest["timings"], data=manifest["data"],
                                  finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
            manifest["status"] = status
        order = {c.key: j for j, c in enumerate(all_cells)}
        rows.sort(key=lambda r: order.get(r["cell"], len(order)))
        return SearchResults(rows=rows, curves=curves, subspaces=subspaces, manifest=manifest,
                             run_dir=store.path if store else None, complete=complete)

    def _data_summary(self) -> dict:
        out = {}
        for name, ctx in self._contexts.items():
            out[name] = {"n_train_total": ctx.n_train_total, "n_test_total": ctx.n_test_total,
                         "n_train_kept": int(ctx.train_rows.numel()), "n_test_kept": int(ctx.test_rows.numel()),
                         "model_accuracy": ctx.model_accuracy}
        return out

    # ---------------------------------------------------------------- one cell
    def run_cell(self, cell: Cell, progress=None, cell_index: int = 0, n_cells: int = 1, should_stop=None,
                 is_main: bool = True):
        """(rows, curve, subspaces) for one cell, or None if should_stop fired."""
        with _threads_for(self.model):
            return self._run_cell(cell, progress, cell_index, n_cells, should_stop, is_main)

    def _run_cell(self, cell, progress, cell_index, n_cells, should_stop, is_main):
        from experiments import controls

        t0 = time.perf_counter()
        method = cell.method
        if method in METHODS or method == "untrained_model" or method.endswith("_disjoint"):
            ctx = self.context({"untrained_model": "untrained"}.get(method, "disjoint" if method.endswith("_disjoint") else "main"))
            base_method = self.config.method
            out = self._search_cell(ctx, cell, base_method, progress, cell_index, n_cells, should_stop, is_main,
                                    keep_subspaces=method in METHODS)
            if out is None:
                return None
            rows, curve, subspaces = out
        elif method == "random_rotation":
            rows, curve, subspaces = controls.random_rotation(self, self.context("main"), cell), [], {}
        elif method == "vanilla":
            rows, curve, subspaces = controls.vanilla(self, self.context("main"), cell), [], {}
        elif method == "probe":
            rows, curve, subspaces = controls.probe(self, self.context("main"), cell), [], {}
        else:
            raise ConfigError(f"unknown method {method!r}; allowed values: {list(METHODS) + list(CONTROLS)}")
        seconds = round(time.perf_counter() - t0, 3)
        for r in rows:
            r["seconds"] = seconds
        return rows, curve, subspaces

    def cell_generator(self, cell: Cell) -> torch.Generator:
        """Seeded by (seed, site): a cell's result does not depend on which process runs it or when, and
        the random-rotation control is exactly the rotation DAS starts from at that site."""
        g = torch.Generator()
        g.manual_seed(self.config.seed * 1_000_003 + zlib.crc32(cell.key.split("__", 1)[1].encode()))
        return g

    def new_rotation(self, ctx: "_Context", site: Site, gen: torch.Generator) -> RotatedSubspace:
        k = self.config.k
        slices = {v: (i * k, (i + 1) * k) for i, v in enumerate(self.variables)}
        module = RotatedSubspace(ctx.model.site_dim(site), k * len(self.variables), self.config.parametrization,
                                 slices=slices, generator=gen)
        return module.to(ctx.model.device)

    def _search_cell(self, ctx, cell, method, progress, cell_index, n_cells, should_stop, is_main, keep_subspaces):
        c = self.config
        site = cell.site
        gen = self.cell_generator(cell)
        if ctx.train_rows.numel() == 0:
            raise ConfigError(f"no training examples left for {cell.key}: the model answers none of the base and "
                              f"source inputs correctly ({ctx.model_accuracy:.0%} accuracy); check the model and task")
        steps = c.steps or c.epochs * math.ceil(ctx.train_rows.numel() / c.batch_size)

        def report(step, loss):
            if progress:
                progress(Progress("step", cell.key, cell_index, n_cells, step=step, n_steps=total_steps, loss=loss,
                                  is_main=is_main))

        if method == "das":
            module = self.new_rotation(ctx, site, gen)
            total_steps = steps
            curve = ctx.train(site, module, ctx.train_rows, steps, gen, report, should_stop)
            if curve is None:
                return None
            rows = ctx.evaluate_rows(site, module, cell, k=c.k, final_loss=curve[-1] if curve else None)
            subspaces = self._das_artifacts(ctx, site, module, rows) if keep_subspaces else {}
            return rows, curve, subspaces

        # Boundless: one learned boundary per variable, each trained on its own examples.
        rows, curve, subspaces = [], [], {}
        total_steps = steps * len(self.variables)
        t_start, t_end = self.temperature
        for vi, var in enumerate(self.variables):
            module = BoundlessSubspace(ctx.model.site_dim(site), temperature_start=t_start, temperature_end=t_end,
                                       parametrization=c.parametrization, generator=gen).to(ctx.model.device)
            train_rows = ctx.rows_for_set(ctx.train_rows, [var])
            offset = vi * steps
            part = ctx.train(site, module, train_rows, steps, gen, lambda s, l: report(offset + s, l), should_stop,
                             variable=var, boundless=True)
            if part is None:
                return None
            curve += part
            var_rows = ctx.evaluate_rows(site, module, cell, k=module.intervention_size,
                                         final_loss=part[-1] if part else None, only_variable=var)
            rows += var_rows
            if keep_subspaces and module.intervention_size > 0:
                subspaces[(site.key, var)] = Subspace(
                    rotation=module.hard_rotation(), model_name=ctx.model.name,
                    model_fingerprint=ctx.model.fingerprint, hidden_size=ctx.model.site_dim(site), site=site.key,
                    layer=site.layer, component=site.component, position=site.position, variables=[var],
                    parametrization=c.parametrization, task=c.task, hypothesis=self.hypothesis_name,
                    iia=var_rows[0]["iia"] if var_rows else None, extra={"method": "boundless"})
        return rows, curve, subspaces

    def _das_artifacts(self, ctx, site, module, rows) -> dict[tuple[str, str], Subspace]:
        """One artifact per variable (its slice of rows, what LoReFT starts from) and, for
        several variables, the joint rotation with its slices."""
        c = self.config
        iia = {r["variable"]: r["iia"] for r in rows}
        rotation = module.rotation.detach().cpu()
        common = dict(model_name=ctx.model.name, model_fingerprint=ctx.model.fingerprint,
                      hidden_size=ctx.model.site_dim(site), site=site.key, layer=site.layer, component=site.component,
                      position=site.position, parametrization=c.parametrization, task=c.task,
                      hypothesis=self.hypothesis_name, extra={"method": "das", "k_per_variable": c.k, "seed": c.seed})
        out = {}
        for var, (a, b) in module.slices.items():
            out[(site.key, var)] = Subspace(rotation=rotation[a:b], variables=[var], iia=iia.get(var), **common)
        if len(module.slices) > 1:
            joint = "+".join(module.slices)
            out[(site.key, joint)] = Subspace(rotation=rotation, variables=list(module.slices), slices=dict(module.slices),
                                              iia=iia, **common)
        return out


# ------------------------------------------------------------------ one model + one split, prepared once
class _Context:
    """Everything the cells on one (model, train/test split) share: distinct inputs,
    the model's answers on them, which examples are kept, and one SuffixRunner.prepare per
    position covering every swept site."""

    def __init__(self, search: AlignmentSearch, model: Model, train: CounterfactualDataset,
                 test: CounterfactualDataset, filter_correct: bool):
        self.search = search
        self.model = model
        task, hyp = search.task, search.hypothesis
        self.variables = search.variables
        ids = answer_ids(model, task)
        self.answer_values = list(ids)
        self.answer_token_ids = torch.tensor([ids[v] for v in self.answer_values], device=model.device)
        value_index = {_key(v): i for i, v in enumerate(self.answer_values)}

        examples = list(train.examples) + list(test.examples)
        self.n_train_total, self.n_test_total = len(train), len(test)
        index: dict[str, int] = {}
        self.inputs: list[dict] = []

        def idx(inp: dict) -> int:
            key = json.dumps(inp, sort_keys=True, default=repr)
            if key not in index:
                index[key] = len(self.inputs)
                self.inputs.append(inp)
            return index[key]

        V = len(self.variables)
        base_idx, src_idx, active, target, sets = [], [], [], [], []
        for ex in examples:
            b = idx(ex.base)
            base_idx.append(b)
            srcs, act = [b] * V, [False] * V
            for var, src in zip(ex.variables, ex.sources):
                j = self.variables.index(var)
                srcs[j], act[j] = idx(src), True
            src_idx.append(srcs)
            active.append(act)
            target.append(value_index[_key(ex.counterfactual_output)])
            sets.append("+".join(v for v in self.variables if v in ex.variables))
        dev = model.device
        self.base_idx = torch.tensor(base_idx, device=dev)
        self.src_idx = torch.tensor(src_idx, device=dev).reshape(len(examples), V)
        self.active = torch.tensor(active, device=dev).reshape(len(examples), V)
        self.target = torch.tensor(target, device=dev)  # index into answer_values
        self.set_names = sets
        self.is_test = torch.tensor([False] * len(train) + [True] * len(test), device=dev)

        self._prepared: dict[Any, tuple[SuffixRunner, Prepared]] = {}
        # The model's factual answers on every distinct input (one identity suffix pass).
        factual = torch.tensor([value_index[_key(hyp.run(x)[hyp.output])] for x in self.inputs], device=dev)
        first_site = search.sites[0]
        pred = self.predict(first_site, lambda h: h)
        correct = pred == factual
        self.model_accuracy = float(correct.float().mean())
        self.input_correct = correct
        if filter_correct:
            keep = correct[self.base_idx] & correct[self.src_idx].all(dim=1)
        else:
            keep = torch.ones(len(examples), dtype=torch.bool, device=dev)
        self.train_rows = (keep & ~self.is_test).nonzero().flatten()
        self.test_rows = (keep & self.is_test).nonzero().flatten()

    # ------------------------------------------------------------ prepare, once per position
    def prepared(self, site: Site) -> tuple[SuffixRunner, Prepared]:
        pos = site.position
        if pos not in self._prepared:
            sites = [s for s in self.search.sites if s.position == pos]
            runner = SuffixRunner(self.model, sites[0])
            batch = encode(self.model, self.search.task, self.inputs, pos)
            with torch.no_grad():
                pieces = [runner.prepare(batch.select(slice(i, i + PREPARE_CHUNK)), sites=sites)
                          for i in range(0, len(batch), PREPARE_CHUNK)]
            self._prepared[pos] = (runner, _concat_prepared(pieces, batch))
        return self._prepared[pos]

    def site_acts(self, site: Site) -> torch.Tensor:
        return self.prepared(site)[1].acts[site.key]

    # ------------------------------------------------------------ forward with a DII
    def logits(self, site: Site, rows: torch.Tensor, fn: Callable) -> torch.Tensor:
        """Answer logits for examples `rows`, the site's base activation h replaced by fn(h, rows)."""
        runner, prep = self.prepared(site)
        sub = prep.select(self.base_idx[rows])
        return runner.logits(sub, lambda h: fn(h, rows), site=site)

    @torch.no_grad()
    def predict(self, site: Site, fn: Callable) -> torch.Tensor:
        """Predicted answer index on every distinct input (no intervention when fn is identity)."""
        runner, prep = self.prepared(site)
        out = []
        for i in range(0, len(self.inputs), EVAL_BATCH):
            sub = prep.select(torch.arange(i, min(i + EVAL_BATCH, len(self.inputs))))
            out.append(runner.logits(sub, fn, site=site)[:, self.answer_token_ids].argmax(-1))
        return torch.cat(out)

    def dii_fn(self, site: Site, module, variable: str | None = None) -> Callable:
        """fn(h, rows) applying `module` with each example's sources at this site."""
        acts = self.site_acts(site)
        if variable is not None:  # one source: the variable's (boundless, vanilla)
            j = self.variables.index(variable)
            return lambda h, rows: module(h, acts[self.src_idx[rows, j]].to(h.dtype))
        return lambda h, rows: module(h, acts[self.src_idx[rows]].to(h.dtype), self.active[rows])

    def rows_for_set(self, rows: torch.Tensor, variables: list[str]) -> torch.Tensor:
        name = "+".join(variables)
        mask = torch.tensor([self.set_names[i] == name for i in rows.tolist()], dtype=torch.bool, device=rows.device)
        return rows[mask]

    # ------------------------------------------------------------ train and evaluate
    def train(self, site, module, rows, steps, gen, report, should_stop, variable=None, boundless=False):
        c = self.search.config
        opt = torch.optim.Adam(module.parameters(), lr=c.lr)
        fn = self.dii_fn(site, module, variable)
        curve: list[float] = []
        order = torch.empty(0, dtype=torch.long)
        pos = 0
        n = rows.numel()
        module.train()
        for step in range(steps):
            if should_stop is not None and step % 10 == 0 and should_stop():
                return None
            if pos + min(c.batch_size, n) > order.numel():  # a fresh epoch
                order, pos = torch.randperm(n, generator=gen), 0
            batch_rows = rows[order[pos:pos + c.batch_size].to(rows.device)]
            pos += c.batch_size
            if boundless:
                module.set_temperature(module.temperature_at(step, steps))
            logits = self.logits(site, batch_rows, fn)
            targets = self.answer_token_ids[self.target[batch_rows]]
            loss = F.cross_entropy(logits.float(), targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            curve.append(round(float(loss.detach()), 6))
            report(step + 1, curve[-1])
        module.eval()
        return curve

    @torch.no_grad()
    def correct(self, site, rows, fn) -> torch.Tensor:
        out = []
        for i in range(0, rows.numel(), EVAL_BATCH):
            r = rows[i:i + EVAL_BATCH]
            logits = self.logits(site, r, fn)
            out.append(logits[:, self.answer_token_ids].argmax(-1) == self.target[r])
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)

    def evaluate_rows(self, site, module, cell: Cell, k, final_loss=None, only_variable: str | None = None,
                      sets: list[list[str]] | None = None) -> list[dict]:
        """IIA per intervened-variable set on the kept test examples."""
        if sets is None:
            sets = [[only_variable]] if only_variable else self.search.intervened_sets()
        rows = []
        for vs in sets:
            test = self.rows_for_set(self.test_rows, vs)
            fn = self.dii_fn(site, module, only_variable)
            iia = int(self.correct(site, test, fn).sum()) / test.numel() if test.numel() else None
            rows.append(self.row(cell, "+".join(vs), iia, k=k, n_test=int(test.numel()),
                                 n_train=int(self.rows_for_set(self.train_rows, vs).numel()), final_loss=final_loss))
        return rows

    def row(self, cell: Cell, variable: str, iia, **extra) -> dict:
        s = cell.site
        return {"cell": cell.key, "site": s.key, "layer": s.layer, "position": s.position, "component": s.component,
                "variable": variable, "method": cell.method, "iia": iia,
                "n_train_total": self.n_train_total, "n_test_total": self.n_test_total,
                "seed": self.search.config.seed, **extra}


# ------------------------------------------------------------------ helpers
SMALL_MODEL_PARAMS = 5_000_000


@contextlib.contextmanager
def _threads_for(model: Model):
    """On CPU, a small model's matmuls are microseconds: handing them to several threads
    costs more than it saves (30x slower on a busy 2-core machine), so run them on one."""
    n_params = sum(p.numel() for p in model.hf.parameters())
    if model.device.type != "cpu" or n_params > SMALL_MODEL_PARAMS or torch.get_num_threads() == 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _key(v) -> str:
    return json.dumps(v, sort_keys=True, default=repr)


def _concat_prepared(pieces: list[Prepared], batch) -> Prepared:
    """Join chunk-wise prepares of one padded batch. Chunks may have kept different KV
    prefixes (their earliest intervened token differs): crop all to the shortest, since
    keys/values before it are the same, and cut the suffix inputs from the full batch."""
    if len(pieces) == 1:
        return pieces[0]
    p_min = min(p.prefix_len for p in pieces)
    cat = lambda ts: None if ts[0] is None else torch.cat(ts)  # noqa: E731
    acts = {k: torch.cat([p.acts[k] for p in pieces]) for k in pieces[0].acts}
    shift = lambda p, t: None if t is None else t + (p.prefix_len - p_min)  # noqa: E731
    positions = cat([shift(p, p.positions) for p in pieces])
    answer_positions = cat([shift(p, p.answer_positions) for p in pieces])
    if p_min > 0:
        n_layers = len(pieces[0].prefix_kv)
        prefix_kv = [(torch.cat([p.prefix_kv[i][0][:, :, :p_min] for p in pieces]),
                      torch.cat([p.prefix_kv[i][1][:, :, :p_min] for p in pieces])) for i in range(n_layers)]
    else:
        prefix_kv = None
    T = batch.seq_len
    inputs = {k: (v[:, p_min:] if (k != "attention_mask" and T is not None and v.dim() >= 2 and v.shape[1] == T) else v)
              for k, v in batch.inputs.items()}
    if len({p.prefix_len for p in pieces}) == 1:
        inputs = {k: torch.cat([p.inputs[k] for p in pieces]) for k in pieces[0].inputs}
    return replace(pieces[0], inputs=inputs, positions=positions, answer_positions=answer_positions, acts=acts,
                   prefix_kv=prefix_kv, prefix_len=p_min)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"{device.type} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def resolve_model_path(spec: str, model_seed: int = 0) -> str:
    """"zoo:<task>" -> the zoo model's directory (trained on first use); anything else unchanged."""
    if spec.startswith("zoo:"):
        from experiments import zoo

        return str(zoo.get_model(spec[4:], seed=model_seed))
    return spec


def load_model_spec(spec: str, config: SearchConfig | None = None) -> Model:
    """A Model from "zoo:<task>", a local HF directory or a hub id, honouring the config's
    device, dtype and device_map."""
    device = config.device if config else "auto"
    dtype = getattr(torch, config.dtype) if (config and config.dtype) else None
    path = resolve_model_path(spec, config.model_seed if config else 0)
    if config is not None and config.device_map == "auto":
        return _load_dispatched(path, dtype)
    return load_model(path, device=device, dtype=dtype)


def _load_dispatched(path: str, dtype) -> Model:
    """device_map="auto" (accelerate) spreads a large model over the visible GPUs.
    load_model moves a model to one device, so this builds the Model around the
    dispatched module itself."""
    import transformers

    from interventions.errors import InterventionError
    from interventions.model import _load_tokenizer

    try:
        hf = transformers.AutoModelForCausalLM.from_pretrained(path, device_map="auto",
                                                               **({"dtype": dtype} if dtype else {}))
    except Exception as e:  # noqa: BLE001
        raise InterventionError(f"could not load {path!r} with device_map='auto' ({type(e).__name__}: {e}); "
                                "install accelerate, or drop device_map from the config") from None
    hf.eval()
    for p in hf.parameters():
        p.requires_grad_(False)
    tok = _load_tokenizer(path, False)
    if tok is not None and tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return Model(hf, tokenizer=tok, name=path)


def untrained_copy(model: Model, seed: int) -> Model:
    """The same architecture with random weights: from the zoo's build_untrained when the
    model has a directory, else a re-initialised copy of the module."""
    import copy

    from experiments import zoo

    src = getattr(getattr(model.hf, "config", None), "_name_or_path", "") or model.name
    if src and (Path(src) / "config.json").is_file():
        path = zoo.build_untrained(src, seed=seed)
        return load_model(str(path), device=model.device, tokenizer=model.tokenizer, name=f"{model.name} (untrained)")
    torch.manual_seed(seed)
    config = getattr(model.hf, "config", None)
    if config is not None and hasattr(type(model.hf), "config_class"):
        hf = type(model.hf)(config)  # an HF model: its own initialisation
    else:
        hf = copy.deepcopy(model.hf)
        for m in hf.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    return load_model(hf, device=model.device, tokenizer=model.tokenizer, name=f"{model.name} (untrained)")
