"""Site pre-screening (`screen_top`): before DAS trains on every site of a grid, a cheap pass
ranks the sites, and the full training runs only on each variable's best ones.

The signal, chosen and measured (README, "Screened against full"): a few steps of the main
method itself at each site (`screen_steps`, 20 by default, at a quarter of the batch size: the
arithmetic of about 5 full steps), trained on 80% of the kept training examples and scored by
IIA on the other 20%, so the test examples that report the final IIA are never used to choose. (The full-vector interchange, which needs
no training, was tried and rejected: on IOI's s1_io_flip pairs patching the whole last-token
vector carries the answer token, not its position, and reads 0 at the layer where DAS finds
the output position.)

A screening cell is a cell like any other ("screen__<site>"), saved, resumed and listed; its
rows have method "screen", no IIA, and the score in `screen_score`. A site with a screening row
and no main-method row was screened out (the heatmap says so).
"""

from __future__ import annotations

import math

import torch

from experiments.search.cells import Cell

SCREEN = "screen"
VALIDATION_SHARE = 0.2


def screen_cells(search) -> list[Cell]:
    return [Cell(SCREEN, site) for site in search.sites]


DEFAULT_STEPS = 20


def screen_batch(config) -> int:
    """Screening steps take a quarter of the batch: more updates for the same arithmetic."""
    return max(8, config.batch_size // 4)


def run_screen_cell(search, cell: Cell, make_cell_run):
    """(rows, curve) of a screening cell, or None if stopped: the main method, `screen_steps`
    steps on part of the training examples, scored on the rest."""
    from experiments.search.methods import get_method

    split = search.split("main")
    rows = split.train_rows
    g = torch.Generator().manual_seed(search.config.seed + 7)
    perm = rows[torch.randperm(rows.numel(), generator=g).to(rows.device)]
    n_val = max(16, round(VALIDATION_SHARE * rows.numel()))
    run = make_cell_run(split).derived(train_override=perm[n_val:], test_override=perm[:n_val],
                                       steps_override=search.config.screen_steps or DEFAULT_STEPS,
                                       batch_override=screen_batch(search.config), keep_artifacts=False,
                                       options_of=search.config.method)
    out = get_method(search.config.method).run(run)
    if out is None:
        return None
    scored = []
    for r in out.rows:
        r = {k: v for k, v in r.items() if k not in ("test_index", "test_correct", "test_predicted", "iia_low", "iia_high",
                                                     "above_floor")}
        r.update(method=SCREEN, screen_score=r.pop("iia"), iia=None, screened_on="validation")
        scored.append(r)
    return scored, out.curve


def kept_sites(search, rows: list[dict]) -> list:
    """Each single variable's top sites by screening score (a count, or a share of the grid),
    together, in the grid's order."""
    top = search.config.screen_top
    n = top if isinstance(top, int) else max(1, math.ceil(top * len(search.sites)))
    keep: set[str] = set()
    for v in search.variables:
        scored = [r for r in rows if r["method"] == SCREEN and r["variable"] == v and r.get("screen_score") is not None]
        scored.sort(key=lambda r: (-r["screen_score"], r["site"]))
        keep |= {r["site"] for r in scored[:n]}
    return [s for s in search.sites if s.key in keep]


def planned_trained_sites(search) -> int:
    """How many sites train fully after screening (at most), for the plan and the progress."""
    top = search.config.screen_top
    n = top if isinstance(top, int) else max(1, math.ceil(top * len(search.sites)))
    return min(len(search.sites), n * len(search.variables))
