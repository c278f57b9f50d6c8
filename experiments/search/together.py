"""Cells trained together (`train_together`, on by default): the cells of a method with the
`together` trait (DAS) that share a layer and component (other seeds at the site; other positions
too on models without a KV cache, such as the MLPs and BERT) train in lockstep, and each step's
suffix forward and backward is one batched call for every group of their minibatches that can
stack (the same KV prefix and shapes).

The math allows it because the model is frozen: cell j's rows of the batched forward depend
only on cell j's module, so the gradient of the summed losses with respect to module j is the
gradient of cell j's own loss. Each cell keeps its own generator (init and batch order), Adam
and schedule, so its IIA equals the one it gets alone (to float rounding; a test checks 1e-4).
Results, progress, resume and cancel stay per cell: the search records each cell as its own.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from experiments.schedule import lr_scheduler
from experiments.search.cells import Cell, Progress
from experiments.search.methods import get_method
from experiments.search.methods.base import CellOutput, CellRun, Minibatches
from experiments.search.screening import SCREEN
from experiments.threads import threads_for
from interventions.suffix import Prepared

MAX_TOGETHER = 8  # cells per batched step: more multiplies the step's memory for little gain


def together_key(search, cell: Cell) -> tuple | None:
    """Cells with equal keys may train together; None: this cell trains alone."""
    c = search.config
    if not c.train_together or cell.method == SCREEN or c.validation_fraction:
        return None
    method = get_method(cell.method)
    if not (method.together and method.trains):
        return None
    model = cell.seed if c.vary_model_seed else None  # each seed its own zoo model: nothing to share
    # A causal LM's positions keep different KV prefixes, so their minibatches never stack.
    position = cell.site.position if search.model.is_causal_lm else None
    return cell.method, method.split, model, cell.site.layer, cell.site.component, position


def group_from(search, todo: list[Cell], skip) -> list[Cell]:
    """todo[0] and the later cells of todo that train with it (not in `skip`), at most MAX_TOGETHER."""
    key = together_key(search, todo[0])
    if key is None:
        return todo[:1]
    group = [todo[0]]
    for cell in todo[1:]:
        if len(group) == MAX_TOGETHER:
            break
        if cell.key not in skip and together_key(search, cell) == key:
            group.append(cell)
    return group


def run_together(search, cells: list[Cell], progress=None, cell_index: int = 0, n_cells: int = 1,
                 should_stop=None) -> list[tuple] | None:
    """(rows, curve, subspaces) per cell, as search.run_cell gives each, or None if stopped."""
    method = get_method(cells[0].method)
    runs, owners = [], []
    for cell in cells:
        owner = search.replicate(cell.seed) if cell.seed is not None else search
        split = owner.split(method.split)
        owner.check_trainable(cell, method, split)
        runs.append(owner.make_cell_run(Cell(cell.method, cell.site), split, should_stop=should_stop))
        owners.append(owner)
    longest = max(range(len(runs)), key=lambda i: runs[i].steps())

    def report(step, n_steps, loss):  # one bar for the group: its longest cell's
        if progress:
            progress(Progress("step", cells[longest].key, cell_index, n_cells, step=step, n_steps=n_steps, loss=loss))

    runs[longest] = runs[longest].derived(report=report)
    with threads_for(search.model):
        t0 = time.perf_counter()
        modules = [method.start(run, run.variables) for run in runs]
        curves = train_together(runs, modules)
        if curves is None:
            return None
        train_s = (time.perf_counter() - t0) / len(cells)
        results = []
        for cell, owner, run, module, curve in zip(cells, owners, runs, modules, curves):
            t1 = time.perf_counter()
            out = method.finish(run, run.variables, (module, curve), CellOutput(rows=[]))
            for r in out.rows:
                r["trained_together"] = len(cells)
            result = owner.cell_result(Cell(cell.method, cell.site), out, round(train_s + time.perf_counter() - t1, 3))
            results.append(search.seeded(cell, result) if cell.seed is not None else result)
    return results


def train_together(runs: list[CellRun], modules: list[torch.nn.Module]) -> list[list[float]] | None:
    """CellRun.train for several cells in lockstep (no validation, no penalty): each its own
    Adam, schedule and batch order, one batched forward and backward per step. Each cell's loss
    curve, or None if should_stop fired."""
    steps = [run.steps() for run in runs]
    opts, scheds, batches, fns = [], [], [], []
    for run, module, n in zip(runs, modules, steps):
        opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=run.config.lr)
        opts.append(opt)
        scheds.append(lr_scheduler(opt, run.config.lr_schedule, n))
        fns.append(run.split.dii_fn(run.site, module))
        batches.append(Minibatches(run.train_rows, run.batch_override or run.config.batch_size, run.generator))
        module.train()
    curves: list[list[float]] = [[] for _ in runs]
    stop = runs[0].should_stop
    for step in range(max(steps)):
        if stop is not None and step % 10 == 0 and stop():
            return None
        live = [i for i, n in enumerate(steps) if step < n]
        losses = joint_losses([(runs[i], batches[i].next(), fns[i]) for i in live])
        for i in live:
            opts[i].zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()
        for i, loss in zip(live, losses):
            opts[i].step()
            scheds[i].step()
            curves[i].append(round(float(loss.detach()), 6))
            runs[i].report(step + 1, steps[i], curves[i][-1])
    for module in modules:
        module.eval()
    return curves


def joint_losses(parts: list[tuple[CellRun, torch.Tensor, object]]) -> list[torch.Tensor]:
    """Each (cell, minibatch rows, fn)'s counterfactual loss, from one suffix forward per group
    of minibatches that stack (equal Prepared.stack_key, layer, component and loss vocabulary)."""
    pieces, groups = [], {}
    for i, (run, rows, _) in enumerate(parts):
        runner, sub = run.split.minibatch(run.site, rows)
        vocab = run.split.loss_vocab_rows
        key = (sub.stack_key(), run.site.layer, run.site.component, None if vocab is None else tuple(vocab.tolist()))
        groups.setdefault(key, []).append(i)
        pieces.append((runner, sub))
    losses: list[torch.Tensor | None] = [None] * len(parts)
    for members in groups.values():
        lead = parts[members[0]][0]
        # Every member's activations under the lead's site key: the hook acts on the layer and
        # component, and each row's own position comes from its prepared inputs.
        subs = [replace(pieces[i][1], acts={lead.site.key: pieces[i][1].acts[parts[i][0].site.key]}) for i in members]
        sizes = [len(s) for s in subs]

        def joint_fn(h, members=members, sizes=sizes):
            return torch.cat([parts[i][2](chunk, parts[i][1]) for i, chunk in zip(members, h.split(sizes))])

        logits = pieces[members[0]][0].logits(Prepared.stack(subs) if len(subs) > 1 else subs[0], joint_fn,
                                              site=lead.site, vocab_rows=lead.split.loss_vocab_rows)
        for i, chunk in zip(members, logits.split(sizes)):
            losses[i] = parts[i][0].split.loss_of(chunk, parts[i][1])
    return losses
