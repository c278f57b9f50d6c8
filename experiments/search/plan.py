"""A search's plan before it runs (`dii plan CONFIG`, the app's search form, and every `dii
search`, which records it in the manifest beside the time the run took):

- the cells, and per cell its training steps, its forward and backward passes and the
  examples it reads (counted from the config and the generated data, no guessing);
- a wall-time and peak-memory estimate from a calibration on this machine: a small prepared
  split (its cost per distinct input), and a few real training and evaluation steps at the
  lowest and highest layer of each position of the grid (a step's cost is close to linear in
  the layers above the site), interpolated for the layers between.

The calibration runs the model for a few seconds; nothing is written.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field

import torch

CALIBRATION_STEPS = 2  # timed training steps per calibration site (after one untimed)
MINI_TRAIN, MINI_TEST = 96, 64  # the calibration split's examples


@dataclass
class CellPlan:
    cell: str
    method: str
    site: str
    steps: int  # optimizer steps (0 for a method that does not train)
    forward_backward: int  # suffix passes with a gradient (one per step)
    forwards: int  # evaluation passes (batches of test examples)
    examples: int  # examples read: training batches and the test set
    seconds: float  # estimated


@dataclass
class Plan:
    cells: list[CellPlan]
    n_examples: int  # counterfactual examples generated (train + test)
    n_inputs: int  # distinct inputs the model prepares once
    kept_share: float  # the share of examples kept (the model right on base and sources), from calibration
    setup_s: float  # loading, generating and preparing, measured and scaled
    estimate_s: float
    peak_mb: float
    calibration_s: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"n_cells": len(self.cells), "forward_backward": sum(c.forward_backward for c in self.cells),
                "forwards": sum(c.forwards for c in self.cells), "examples": self.n_examples,
                "distinct_inputs": self.n_inputs, "estimate_s": round(self.estimate_s, 2),
                "estimate_peak_mb": round(self.peak_mb, 1), "setup_s": round(self.setup_s, 2),
                "calibration_s": round(self.calibration_s, 2), "kept_share": round(self.kept_share, 3)}

    def summary(self) -> str:
        d = self.to_dict()
        return (f"{d['n_cells']} cells: {d['forward_backward']:,} training steps (a forward and a backward each), "
                f"{d['forwards']:,} evaluation forwards, {d['examples']:,} examples ({d['distinct_inputs']:,} distinct "
                f"inputs); about {_duration(self.estimate_s)} and {self.peak_mb:,.0f} MB at most on this machine")


def plan_search(search) -> Plan:
    """The plan of an AlignmentSearch (its model loaded, its data generated)."""
    from experiments.memory import PeakMemory
    from experiments.search.methods import REGISTRY

    c = search.config
    cells = search.cells()
    train, test = search.datasets("random")
    setup_before = sum(v for k, v in search.timings.items() if k.endswith("_s"))
    from experiments.threads import threads_for

    t0 = time.perf_counter()
    with PeakMemory(search.model.device) as mem, threads_for(search.model):  # the threads the cells run with
        cal = _calibrate(search, train, test)
    calibration_s = time.perf_counter() - t0
    kept = cal["kept_share"]
    n_inputs = _distinct_inputs(train, test)
    methods = [c.method, *c.controls]
    splits = {REGISTRY[m].split for m in methods} | {"main"}
    n_seeds = len(c.seeds or [None])  # each seed generates and prepares its own data
    setup = setup_before * n_seeds + len(splits) * n_inputs * cal["prepare_per_input"] * n_seeds
    n_kept_train = max(1, round(len(train) * kept * (1 - c.validation_fraction)))
    n_kept_test = max(1, round(len(test) * kept))
    eval_batches = math.ceil(n_kept_test / 512) * len(search.intervened_sets())

    def cell_plan(key: str, name: str, site, steps_each: int | None = None, n_test: int = n_kept_test) -> CellPlan:
        method = _stepping(REGISTRY[name], REGISTRY[c.method])
        per_variable = len(search.variables) if method.per_variable else 1
        full = c.steps or c.epochs * math.ceil(n_kept_train / c.batch_size)
        steps = (steps_each or full) * per_variable if method.trains else 0
        step_s, eval_s = cal["cost"](site)
        return CellPlan(key, name, site.key, steps, steps, eval_batches, steps * c.batch_size + n_test,
                        steps * step_s + n_test * eval_s)

    if not c.screen_top:
        plans = [cell_plan(cell.key, cell.method, cell.site) for cell in cells]
    else:  # a short training at every site, then the full one at the kept sites (the mean site's cost)
        from experiments.search.screening import DEFAULT_STEPS, VALIDATION_SHARE, planned_trained_sites, screen_batch

        n_val = max(16, round(VALIDATION_SHARE * n_kept_train))
        short = (c.screen_steps or DEFAULT_STEPS) * screen_batch(c) / c.batch_size  # in full-batch steps
        plans = []
        for s in search.sites:
            p = cell_plan(f"screen__{s.key}", c.method, s, max(1, round(short)), n_val)
            p.method = "screen"
            plans.append(p)
        n_sites = planned_trained_sites(search)
        for m in methods:
            every = [cell_plan(m, m, s) for s in search.sites]
            mean = sum(p.seconds for p in every) / len(every)
            plans += [CellPlan(f"{m}__(screened site {i + 1})", m, "(screened)", every[0].steps, every[0].forward_backward,
                               eval_batches, every[0].examples, mean) for i in range(n_sites) for _ in range(n_seeds)]
    from experiments.search.together import together_key

    shared = Counter(key for key in (together_key(search, cell) for cell in cells) if key is not None)
    if any(n > 1 for n in shared.values()):  # two cells with one key train together
        cal["notes"].append("some cells train together (train_together): the time is estimated one cell at a "
                            "time, so it is an upper bound")
    prepared_mb = cal["prepared_mb_per_input"] * n_inputs * len(splits) * n_seeds
    return Plan(plans, len(train) + len(test), n_inputs, kept, setup, setup + sum(p.seconds for p in plans),
                mem.peak_mb + prepared_mb, calibration_s, cal["notes"])


def _stepping(method, main):
    """The method whose training loop a cell runs: the main method's for a control that runs it
    elsewhere; none (trains = False) for a method with a run() of its own and no fit (the probe)."""
    from experiments.search.methods.base import AlignmentMethod, MainMethodElsewhere

    if issubclass(method, MainMethodElsewhere):
        return main
    if method.fit is AlignmentMethod.fit:
        return type("NoSteps", (), {"trains": False, "per_variable": False})
    return method


def _distinct_inputs(*datasets) -> int:
    import json

    seen = set()
    for data in datasets:
        for ex in data:
            for inp in (ex.base, *ex.sources):
                seen.add(json.dumps(inp, sort_keys=True, default=repr))
    return len(seen)


def _calibrate(search, train, test) -> dict:
    """Time a small prepared split and a few steps per position at its lowest and highest layer."""
    from causal import CounterfactualDataset
    from experiments.search.prepared import PreparedSplit

    c, model = search.config, search.model
    mini_train = CounterfactualDataset(train.examples[:MINI_TRAIN], train.model, train.task)
    mini_test = CounterfactualDataset(test.examples[:MINI_TEST], test.model, test.task)
    t0 = time.perf_counter()
    split = PreparedSplit(model, search.task, search.hypothesis, search.variables, search.sites, mini_train, mini_test,
                          filter_correct=True, name="calibration", loss_over=c.loss_over)
    prepare_s = time.perf_counter() - t0
    n_mini = len(split.inputs)
    prepared_bytes = sum(_tensor_bytes(prep) for _, prep in split._prepared.values())
    kept = (split.train_rows.numel() + split.test_rows.numel()) / max(1, len(mini_train) + len(mini_test))
    notes = []
    rows = split.train_rows if split.train_rows.numel() else torch.arange(len(mini_train), device=model.device)
    if not split.train_rows.numel():
        notes.append("the model answers none of the calibration examples: counted as if all were kept")
        kept = 1.0
    timed: dict[tuple, tuple[float, float]] = {}
    by_position: dict = {}
    for site in search.sites:
        by_position.setdefault((site.position, site.component), []).append(site)
    for group in by_position.values():
        for site in {min(group, key=lambda s: s.layer), max(group, key=lambda s: s.layer)}:
            timed[(site.position, site.component, site.layer)] = _time_site(split, site, rows, search)

    def cost(site) -> tuple[float, float]:
        group = by_position[(site.position, site.component)]
        lo, hi = min(s.layer for s in group), max(s.layer for s in group)
        a, b = timed[(site.position, site.component, lo)], timed[(site.position, site.component, hi)]
        w = 0.0 if hi == lo else (site.layer - lo) / (hi - lo)
        return a[0] + w * (b[0] - a[0]), a[1] + w * (b[1] - a[1])

    return {"prepare_per_input": prepare_s / max(1, n_mini), "prepared_mb_per_input": prepared_bytes / 2**20 / max(1, n_mini),
            "kept_share": kept, "cost": cost, "notes": notes}


def _time_site(split, site, rows, search) -> tuple[float, float]:
    """(seconds per training step of batch_size, seconds per evaluated example) at a site."""
    from interventions import RotatedSubspace

    c, d = search.config, split.model.site_dim(site)
    slices, start = {}, 0
    for v in search.variables:
        k = min(search.ks[v], d - start - (len(search.variables) - len(slices) - 1))
        slices[v], start = (start, start + max(1, k)), start + max(1, k)
    module = RotatedSubspace(d, start, c.parametrization, slices=slices).to(split.model.device)
    opt = torch.optim.Adam(module.parameters(), lr=c.lr)
    fn = split.dii_fn(site, module)
    batch = rows[torch.arange(c.batch_size) % rows.numel()]
    times = []
    for i in range(CALIBRATION_STEPS + 1):
        t0 = time.perf_counter()
        loss = split.loss(site, batch, fn)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:  # the first step warms up (allocations, lazy inits)
            times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    split.correct(site, batch, fn)
    eval_s = (time.perf_counter() - t0) / batch.numel()
    return sum(times) / len(times), eval_s


def _tensor_bytes(obj) -> int:
    """The bytes of every tensor an object holds (a Prepared: caches, activations)."""
    seen, total, todo = set(), 0, [obj]
    while todo:
        x = todo.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, torch.Tensor):
            total += x.numel() * x.element_size()
        elif isinstance(x, dict):
            todo.extend(x.values())
        elif isinstance(x, (list, tuple)):
            todo.extend(x)
        elif hasattr(x, "__dict__"):
            todo.extend(vars(x).values())
    return total


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
