"""Distributed Alignment Search over a grid of sites, sklearn-style:

    search = AlignmentSearch(model, "hierarchical_equality", layers=[0, 1, 2], k=4, controls=["random_rotation"])
    results = search.run()          # or run(run_dir="runs/x") to write a run directory
    results.best("V1")

One sweep cell is (method, site). Every method and control is a registered
`AlignmentMethod` (experiments/search/methods/), run on a prepared split (prepared.py),
so every result is one row of one table. DAS trains one rotation per site: several
variables of the hypothesis are disjoint slices of it, trained jointly on examples that
intervene on [V1], [V2], [V1, V2], ...

Why it is fast: the model is frozen, so each (model, split, position) is prepared once
(SuffixRunner.prepare: one forward over every distinct input, keeping the KV prefix before
the intervened token and the activations at every swept site). Sources are those same
activations, so a training step is one suffix forward and backward above the site.
"""

from __future__ import annotations

import time
import zlib
from os import PathLike
from pathlib import Path
from typing import Callable

import torch

from causal import Task
from experiments.errors import ConfigError
from experiments.models import load_model_spec
from experiments.runs import Run, RunStore
from experiments.search.cells import Cell, Progress
from experiments.search.config import SearchConfig, parse_layers
from experiments.search.methods import REGISTRY, CellRun, get_method
from experiments.search.data import SearchData
from experiments.search.screening import SCREEN, kept_sites, planned_trained_sites, run_screen_cell, screen_cells
from experiments.search.together import group_from, run_together
from experiments.threads import device_name, threads_for
from interventions import Model, Site, Subspace

SearchResults = Run  # what run() returns: the results table, curves and subspaces of the run


# ------------------------------------------------------------------ the search
class AlignmentSearch(SearchData):
    """Configure in the constructor; `run()` learns. See the module docstring.

    model: a loaded `Model`, a local HF directory, a hub id, "zoo:<task>", or "zoo" (a zoo
    model trained on this task, the user's own included).
    task: a Task object, a built-in task name, a task file ('my_task.toml') or a builder
    ('my_tasks.py:build', 'package.module:build'). Every other keyword is a SearchConfig
    field (documented there, and in `dii search --help`): layers, positions, method, k, ...
    sites: explicit Site objects instead of the layers x positions x components grid.
    """

    def __init__(self, model: Model | str, task: Task | str, sites: list[Site] | None = None,
                 config: SearchConfig | None = None, **fields):
        model = str(model) if isinstance(model, PathLike) else model  # a pathlib.Path names a directory
        if config is None:
            name = model if isinstance(model, str) else getattr(model, "name", "model")
            config = SearchConfig(model=name, task=task, **fields)
        elif fields:
            config = config.replace(**fields)
        self.config = config
        self._model_arg = model
        self._explicit_sites = list(sites) if sites is not None else None
        self.task = self.config.load_task()
        self.hypothesis = self.task.hypothesis(self.config.hypothesis)
        self.hypothesis_name = self.config.hypothesis or self.task.default_hypothesis
        self.variables = list(self.config.variables or self.hypothesis.intermediates)
        self._model: Model | None = None
        self._sites: list[Site] | None = None
        self._splits: dict = {}  # split name -> PreparedSplit
        self._replicates: dict[int, AlignmentSearch] = {}
        self.contrastive: bool | None = None  # what the data turned out to be (config None: contrastive if admitted)
        self.contrastive_note: str | None = None
        self._datasets: dict = {}  # kind -> (train, test) CounterfactualDataset
        self.timings: dict[str, float] = {}
        self.planned = None  # the Plan, once plan() has run
        self.trained_sites = None  # with screening: the sites it kept, once it has run

    @classmethod
    def from_config(cls, config: SearchConfig, model: Model | None = None) -> "AlignmentSearch":
        return cls(model if model is not None else config.model, config.task, config=config)

    # ---------------------------------------------------------------- the model and the grid
    @property
    def model(self) -> Model:
        if self._model is None:
            t0 = time.perf_counter()
            spec, c = self._model_arg, self.config
            self._model = spec if isinstance(spec, Model) else load_model_spec(
                spec, device=c.device, dtype=c.dtype, device_map=c.device_map, model_seed=c.model_seed, task=self.task,
                vocabulary=self.task.vocabulary)
            self.timings["load_model_s"] = round(time.perf_counter() - t0, 3)
        return self._model

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
            if isinstance(c.layers, str):
                try:
                    layers = parse_layers(c.layers, m.n_layers)
                except ValueError as e:
                    raise ConfigError(f"config field 'layers': {e}") from None
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
        uses_k = any(REGISTRY[m].uses_k for m in (c.method, *c.controls))
        width = min(m.site_dim(s) for s in sites)
        self.ks = self._k_per_variable(width)
        need = sum(self.ks.values())
        for s in sites if uses_k and c.k != "auto" else []:
            d = m.site_dim(s)
            if need > d:
                per = f" ({len(self.variables)} variables x k={c.k})" if len(self.variables) > 1 else ""
                raise ConfigError(f"config field 'k': {need} rotated dimensions{per} do not fit in site {s.key} of width {d}; "
                                  f"use k <= {d // max(1, len(self.variables))}")
        return sites

    def _k_per_variable(self, width: int) -> dict[str, int]:
        """Each variable's k: the config's, or under 'auto' max(4, its number of values), scaled
        down so that all of them fit the narrowest site."""
        if self.config.k != "auto":
            return {v: self.config.k for v in self.variables}
        ks = {v: k for v, k in self.config.auto_k().items() if v in self.variables}
        total = sum(ks.values())
        if total > width:
            ks = {v: max(1, k * width // total) for v, k in ks.items()}
        return ks

    def recipe(self) -> dict:
        """What trains each cell, as the manifest and `dii show` state it."""
        c = self.config
        rule = "k = 'auto': max(4, the variable's number of values)" if c.k == "auto" else f"k = {c.k}"
        return {"k": dict(self.ks), "k_rule": rule, "steps": c.steps, "epochs": None if c.steps else c.epochs,
                "batch_size": c.batch_size, "lr": c.lr, "lr_schedule": c.lr_schedule, "loss_over": c.loss_over}

    def cells(self) -> list[Cell]:
        """Main method per site, then each control per site, in the config's order (per seed
        when the config lists seeds). With screening, a screening cell per site first, and the
        others only on the sites it kept (none until it has run)."""
        c = self.config
        seeds = c.seeds or [None]
        first = screen_cells(self) if c.screen_top else []
        sites = (self.trained_sites or []) if c.screen_top else self.sites
        return first + [Cell(m, s, seed) for seed in seeds for m in [c.method, *c.controls] for s in sites]

    def n_cells_planned(self) -> int:
        """The cells the run will have: with screening, at most each variable's top sites train."""
        c = self.config
        if not c.screen_top or self.trained_sites is not None:
            return len(self.cells())
        per_site = len(c.seeds or [None]) * (1 + len(c.controls))
        return len(self.sites) + planned_trained_sites(self) * per_site

    def replicate(self, seed: int) -> "AlignmentSearch":
        """The one-seed search of `seeds`: data and init seed = seed; the same loaded model
        unless vary_model_seed (then the zoo model of that seed)."""
        if seed not in self._replicates:
            c = self.config
            config = c.replace(seed=seed, seeds=None, vary_model_seed=False,
                               model_seed=seed if c.vary_model_seed else c.model_seed)
            model = self._model_arg if c.vary_model_seed else self.model
            self._replicates[seed] = AlignmentSearch(model, c.task, sites=self._explicit_sites or self.sites,
                                                     config=config)
        return self._replicates[seed]

    # ---------------------------------------------------------------- running
    def manifest(self) -> dict:
        from experiments.runs import run_versions

        m = self.model
        return {
            "kind": "search",
            "config": self.config.to_dict(),
            "config_hash": self.config.hash(),
            "seed": self.config.seed,
            "task": self.config.task,
            "task_source": self.task.source or self.config.task,
            "task_hash": self.task.content_hash(),
            "hypothesis": self.hypothesis_name,
            "variables": self.variables,
            "versions": run_versions(),
            "device": device_name(m.device),
            "model": {"name": m.name, "fingerprint": m.fingerprint, "n_layers": m.n_layers, "hidden_size": m.hidden_size},
            "cells": [c.key for c in self.cells()],
            "n_cells": self.n_cells_planned(),
            "recipe": self.recipe(),
            **({"plan": self.planned.to_dict()} if self.planned is not None else {}),
        }

    def plan(self):
        """The plan of this search (cells, passes, examples, and the time and memory it should
        take here, from a few calibration steps); kept, so the run's manifest records it."""
        from experiments.search.plan import plan_search

        self.planned = plan_search(self)
        return self.planned

    def run(
        self,
        progress: Callable[[Progress], None] | None = None,
        run_dir: str | Path | None = None,
        resume: bool = False,
        should_stop: Callable[[], bool] | None = None,
        cells: list[Cell] | None = None,
        sink=None,
    ) -> Run:
        """Run every cell (or `cells`, a shard) and return the results as a Run. Each finished
        cell goes to `sink` as it completes (a RunStore; `run_dir` makes one), and `resume`
        skips the cells the sink already holds. should_stop() is polled between cells and
        between steps (the app's cancel button)."""
        started = time.perf_counter()
        if cells is not None and self.config.screen_top:
            raise ConfigError("config field 'screen_top': a screened search runs in one process (its second phase "
                              "depends on the first); run it without torchrun, or without screening")
        explicit = cells is not None
        cells = self.cells() if cells is None else cells
        if sink is None and run_dir is not None:
            sink = RunStore(run_dir)
        manifest = self.manifest()
        done = sink.begin(manifest, resume=resume) if sink is not None else {}
        total = self.n_cells_planned() if not explicit else len(cells)
        for note in getattr(getattr(sink, "store", sink), "notes", []):
            if progress:
                progress(Progress("note", "", 0, total, message=note))

        rows: list[dict] = []
        curves: dict[str, list[float]] = {}
        subspaces: dict[tuple[str, str], Subspace] = {}
        state = {"complete": True, "index": 0}

        kept: set[str] = set()  # cells already kept, trained together with an earlier one

        def keep(cell: Cell, i: int, out: tuple) -> None:
            cell_rows, curve, cell_subspaces = out
            rows.extend(cell_rows)
            if curve:
                curves[cell.key] = curve
            subspaces.update(cell_subspaces)
            if sink is not None:
                sink.record(cell.key, cell_rows, {cell.key: curve} if curve else {}, cell_subspaces)
            kept.add(cell.key)
            if progress:
                progress(Progress("cell_done", cell.key, i, total, rows=cell_rows))

        def run_all(todo: list[Cell]) -> bool:
            """Run (or take from the sink) every cell of `todo`; False once stopped."""
            for j, cell in enumerate(todo):
                i = state["index"]
                state["index"] += 1
                if cell.key in kept:
                    continue
                if should_stop is not None and should_stop():
                    return False
                if cell.key in done:
                    rec = done[cell.key]
                    rows.extend(rec["rows"])
                    curves.update(rec.get("curves", {}))
                    if progress:
                        progress(Progress("cell_skipped", cell.key, i, total, rows=rec["rows"]))
                    continue
                if progress:
                    progress(Progress("cell_start", cell.key, i, total))
                group = group_from(self, todo[j:], skip=set(done) | kept)
                if len(group) > 1:
                    outs = run_together(self, group, progress, i, total, should_stop)
                else:
                    outs = [self.run_cell(cell, progress=progress, cell_index=i, n_cells=total, should_stop=should_stop)]
                if outs is None or outs[0] is None:  # stopped mid-cell: nothing of it is kept
                    return False
                for member, out in zip(group, outs):
                    keep(member, i, out)
            return True

        try:
            state["complete"] = run_all(cells)
            if state["complete"] and self.config.screen_top and self.trained_sites is None:
                self.trained_sites = kept_sites(self, rows)  # phase two: the sites screening kept
                total = state["index"] + len(self.cells()) - len(cells)
                state["complete"] = run_all(self.cells()[len(cells):])
        except BaseException as e:  # Ctrl-C or an error: the saved cells stay valid and the run says so
            if sink is not None:
                sink.fail(e, [c.key for c in self.cells()], timings=dict(self.timings))
            raise
        complete = state["complete"]
        order = [c.key for c in self.cells()]
        self.timings["run_s"] = round(time.perf_counter() - started, 3)
        manifest.update(timings=dict(self.timings), data=self._data_summary(), contrastive=self._contrastive_used(),
                        status="finished" if complete else "interrupted", cells=order, n_cells=len(order),
                        **({"screened": [s.key for s in self.trained_sites]} if self.trained_sites else {}))
        if sink is not None:
            extra = {"contrastive_note": self.contrastive_note} if self.contrastive_note else {}
            manifest["status"] = sink.end(order, timings=manifest["timings"], data=manifest["data"],
                                          contrastive=manifest["contrastive"], cells=order, n_cells=len(order),
                                          **({"screened": [s.key for s in self.trained_sites]}
                                             if self.config.screen_top and self.trained_sites is not None else {}),
                                          **extra)
        rank = {k: j for j, k in enumerate(order)}
        rows.sort(key=lambda r: rank.get(r["cell"], len(rank)))
        path = getattr(getattr(sink, "store", sink), "path", None)
        return Run(name=path.name if path else self.config.run_name, path=path, manifest=manifest, rows=rows,
                   curves=curves, subspaces=subspaces, complete=complete)

    def _contrastive_used(self) -> bool | None:
        used = {rep.contrastive for rep in self._replicates.values()} if self._replicates else {self.contrastive}
        return used.pop() if len(used) == 1 else None

    def _data_summary(self) -> dict:
        if self._replicates:
            return {f"seed{seed}": rep._data_summary() for seed, rep in self._replicates.items()}
        return {name: split.summary() for name, split in self._splits.items()}

    # ---------------------------------------------------------------- one cell
    def run_cell(self, cell: Cell, progress=None, cell_index: int = 0, n_cells: int = 1, should_stop=None):
        """(rows, curve, subspaces) for one cell, or None if should_stop fired."""
        if cell.seed is not None:  # one seed of several: that seed's search runs it, under this cell's key
            out = self.replicate(cell.seed).run_cell(Cell(cell.method, cell.site), progress, cell_index, n_cells,
                                                     should_stop)
            return None if out is None else self.seeded(cell, out)

        def report(step, n_steps, loss):
            if progress:
                progress(Progress("step", cell.key, cell_index, n_cells, step=step, n_steps=n_steps, loss=loss))

        with threads_for(self.model):
            t0 = time.perf_counter()
            if cell.method == SCREEN:  # a short training of the main method, scored on held-back examples
                out = run_screen_cell(self, cell, lambda split: self.make_cell_run(cell, split, report, should_stop))
                if out is None:
                    return None
                for r in out[0]:
                    r["seconds"] = round(time.perf_counter() - t0, 3)
                return out[0], out[1], {}
            method = get_method(cell.method)
            split = self.split(method.split)
            self.check_trainable(cell, method, split)
            out = method.run(self.make_cell_run(cell, split, report, should_stop))
            if out is None:
                return None
        return self.cell_result(cell, out, round(time.perf_counter() - t0, 3))

    def make_cell_run(self, cell: Cell, split, report=None, should_stop=None) -> CellRun:
        return CellRun(search=self, split=split, cell_key=cell.key, method=cell.method, site=cell.site,
                       generator=self.cell_generator(cell), should_stop=should_stop,
                       **({"report": report} if report is not None else {}))

    def check_trainable(self, cell: Cell, method, split) -> None:
        if method.trains and split.train_rows.numel() == 0:
            raise ConfigError(f"no training examples left for {cell.key}: the model answers none of the base and "
                              f"source inputs correctly ({split.model_accuracy:.0%} accuracy); check the model and task")

    def cell_result(self, cell: Cell, out, seconds: float) -> tuple:
        """A method's CellOutput as the run keeps it: (rows, curve, subspaces), rows timed."""
        for r in out.rows:
            r["seconds"] = seconds
        subspaces = out.subspaces
        if cell.method != self.config.method:  # another method's artifacts sit beside the main one's
            subspaces = {(site_key, var, cell.method): sub for (site_key, var), sub in subspaces.items()}
        return out.rows, out.curve, subspaces

    @staticmethod
    def seeded(cell: Cell, out: tuple) -> tuple:
        """One seed's cell result under the seeded cell's key."""
        rows, curve, subspaces = out
        for r in rows:
            r["cell"] = cell.key
        return rows, curve, {(*key[:2], f"{key[2] if len(key) > 2 else cell.method}@seed{cell.seed}"): sub
                             for key, sub in subspaces.items()}

    def cell_generator(self, cell: Cell) -> torch.Generator:
        """Seeded by (seed, site): a cell's result does not depend on which process runs it or when, and
        the random-rotation control is exactly the rotation DAS starts from at that site."""
        g = torch.Generator()
        g.manual_seed(self.config.seed * 1_000_003 + zlib.crc32(cell.key.split("__", 1)[1].encode()))
        return g
