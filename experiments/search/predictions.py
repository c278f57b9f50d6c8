"""Predictions of the intervened network for one result cell, for display: fresh
counterfactual pairs from causal/, the cell's learned subspace applied through
interventions' public API (collect + run_with_interventions), and the counts of a
confusion matrix. No training and no new formula here."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from causal import CounterfactualDataset
from causal.errors import require_count
from experiments.errors import ConfigError
from causal.tasks import resolve_task
from interventions import Model, Site, Subspace, answer_ids, collect, encode, run_with_interventions


@dataclass
class CellPredictions:
    labels: list  # output values, in the confusion's row/column order
    confusion: list[list[int]]  # [expected][predicted]
    examples: list[dict]  # base, sources, expected (causal model), predicted (network)

    @property
    def accuracy(self) -> float:
        total = sum(map(sum, self.confusion))
        return sum(self.confusion[i][i] for i in range(len(self.labels))) / total if total else 0.0


@torch.no_grad()
def predict_cell(model: Model, subspace: Subspace, task_name: str, hypothesis: str | None, n: int = 200,
                 seed: int = 12345, task_options: dict | None = None) -> CellPredictions:
    """The network's answers with `subspace` swapped in from each source, on n fresh pairs
    that intervene on the subspace's variables together (seed differs from the search's)."""
    require_count(n, "n (fresh pairs)", 1, ConfigError)
    task = resolve_task(task_name, options=task_options)
    site = Site.parse(subspace.site)
    variables = list(subspace.variables)
    data = CounterfactualDataset.generate(task, n, intervened=[variables], seed=seed, hypothesis=hypothesis)
    bases = [ex.base for ex in data]
    base_batch = encode(model, task, bases, site.position)
    # One activation per variable slice, each from that variable's own source input.
    per_var = [collect(model, encode(model, task, [ex.source_for()[v] for ex in data], site.position), site)
               for v in variables]
    module = subspace.to_module().to(model.device)
    if len(variables) == 1:
        entry = (site, module, per_var[0])
    else:
        stacked = torch.stack(per_var, dim=1)  # [B, V, d]
        active = torch.ones(stacked.shape[:2], dtype=torch.bool, device=stacked.device)
        entry = (site, lambda h: module(h, stacked.to(h.dtype), active))
    logits = run_with_interventions(model, base_batch, [entry])
    ids = answer_ids(model, task)
    labels = sorted(ids, key=lambda v: (type(v).__name__, v))  # one fixed order: False, True; 0, 1, 2; a, b
    picked = logits[:, torch.tensor([ids[v] for v in labels], device=logits.device)].argmax(-1).tolist()
    index = {repr(v): i for i, v in enumerate(labels)}
    confusion = [[0] * len(labels) for _ in labels]
    examples = []
    for ex, p in zip(data, picked):
        confusion[index[repr(ex.counterfactual_output)]][p] += 1
        examples.append({"base": ex.base, "sources": ex.source_for(), "base output": ex.base_output,
                         "expected": ex.counterfactual_output, "predicted": labels[p]})
    return CellPredictions(labels=labels, confusion=confusion, examples=examples)
