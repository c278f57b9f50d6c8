"""A prepared split: everything the cells on one (model, train/test split) share, computed
once. The distinct inputs, the model's answers on them, which counterfactual examples are
kept (the model must be right on the base and every source), and one SuffixRunner.prepare
per position covering every swept site, so a training step is one suffix forward above the
site and sources are activations already in memory.

Methods (experiments/search/methods/) read it through this public surface: `train_rows`,
`test_rows`, `site_acts`, `dii_fn`, `logits`, `correct`, `rows_for_set`, `inputs`.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import torch
import torch.nn.functional as F

from causal import CausalModel, CounterfactualDataset, Task
from interventions import Model, Prepared, Site, SuffixRunner, answer_ids, answer_rule, encode

PREPARE_CHUNK = 256  # inputs per prepare forward
EVAL_BATCH = 128  # rows per no-grad evaluation forward: each gathers its rows of the KV prefix


def value_key(v) -> str:
    return json.dumps(v, sort_keys=True, default=repr)


class PreparedSplit:
    def __init__(self, model: Model, task: Task, hypothesis: CausalModel, variables: list[str], sites: list[Site],
                 train: CounterfactualDataset, test: CounterfactualDataset, filter_correct: bool, *, loss_over: str,
                 name: str = "main"):
        self.name = name
        self.loss_over = loss_over  # "vocabulary": softmax over every token; "answers": over the answer tokens
        self.model = model
        self.task = task
        self.hypothesis = hypothesis
        self.variables = list(variables)
        self.sites = list(sites)
        ids = answer_ids(model, task)
        self.answer_rule = answer_rule(model, task)
        self.answer_values = list(ids)
        self.answer_token_ids = torch.tensor([ids[v] for v in self.answer_values], device=model.device)
        value_index = {value_key(v): i for i, v in enumerate(self.answer_values)}

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
            target.append(value_index[value_key(ex.counterfactual_output)])
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
        hyp = hypothesis
        factual = torch.tensor([value_index[value_key(hyp.run(x)[hyp.output])] for x in self.inputs], device=dev)
        pred = self.predict(self.sites[0], lambda h: h)
        correct = pred == factual
        self.factual = factual  # the hypothesis' output (value index) on every distinct input
        self.model_accuracy = float(correct.float().mean())
        self.input_correct = correct
        if filter_correct:
            keep = correct[self.base_idx] & correct[self.src_idx].all(dim=1)
        else:
            keep = torch.ones(len(examples), dtype=torch.bool, device=dev)
        self.train_rows = (keep & ~self.is_test).nonzero().flatten()
        self.test_rows = (keep & self.is_test).nonzero().flatten()

    @property
    def data(self) -> str:
        """Which generated dataset the rows index: "disjoint" for the disjoint split, else "random"
        (the main and the untrained-model splits share one, so their examples pair)."""
        return "disjoint" if self.name == "disjoint" else "random"

    def floor_rules(self, rows: torch.Tensor, variables: list[str]) -> dict[str, float]:
        """The trivial rules' IIA on these examples (experiments.stats.floors)."""
        from experiments.search.stats import floors

        target = self.target[rows].tolist()
        base = self.factual[self.base_idx[rows]].tolist()
        sources = [self.factual[self.src_idx[rows, self.variables.index(v)]].tolist() for v in variables]
        return floors(target, base, sources)

    def summary(self) -> dict:
        return {"n_train_total": self.n_train_total, "n_test_total": self.n_test_total,
                "n_train_kept": int(self.train_rows.numel()), "n_test_kept": int(self.test_rows.numel()),
                "model_accuracy": self.model_accuracy, "answer_rule": self.answer_rule,
                "answer_values": [value_key(v) for v in self.answer_values]}  # what test_predicted indexes

    # ------------------------------------------------------------ prepare, once per position
    def prepared(self, site: Site) -> tuple[SuffixRunner, Prepared]:
        """The runner and the prepared inputs for the site's position. The first call prepares
        every swept position from one forward per chunk of inputs (the KV prefix of each
        position is a view of that forward's cache), not one forward per position."""
        if site.position not in self._prepared:
            positions = list(dict.fromkeys(s.position for s in self.sites))
            sites = {pos: [s for s in self.sites if s.position == pos] for pos in positions}
            runner = SuffixRunner(self.model, self.sites[0])
            batches = {pos: encode(self.model, self.task, self.inputs, pos) for pos in positions}
            pieces: dict = {pos: [] for pos in positions}
            with torch.no_grad():
                for i in range(0, len(self.inputs), PREPARE_CHUNK):
                    chunk = {pos: b.select(slice(i, i + PREPARE_CHUNK)) for pos, b in batches.items()}
                    for pos, prep in runner.prepare_positions(chunk, sites).items():
                        pieces[pos].append(prep)
            for pos in positions:
                self._prepared[pos] = (runner, Prepared.concat(pieces[pos], batches[pos]))
        return self._prepared[site.position]

    def site_acts(self, site: Site) -> torch.Tensor:
        """Base activation [n_inputs, d] at the site for every distinct input."""
        return self.prepared(site)[1].acts[site.key]

    def train_base_inputs(self) -> list[int]:
        """Indices (into `inputs`) of the distinct base inputs of the kept training examples."""
        return sorted(set(self.base_idx[self.train_rows].tolist()))

    # ------------------------------------------------------------ forward with a DII
    def logits(self, site: Site, rows: torch.Tensor, fn: Callable, vocab_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for examples `rows`, the site's base activation h replaced by fn(h, rows):
        over the vocabulary, or over `vocab_rows` only (token ids; the head computes just those)."""
        runner, sub = self.minibatch(site, rows)
        return runner.logits(sub, lambda h: fn(h, rows), site=site, vocab_rows=vocab_rows)

    def loss(self, site: Site, rows: torch.Tensor, fn: Callable) -> torch.Tensor:
        """The counterfactual cross-entropy of examples `rows`: a softmax over the whole
        vocabulary, or (loss_over = "answers") over the task's answer tokens only."""
        return self.loss_of(self.logits(site, rows, fn, vocab_rows=self.loss_vocab_rows), rows)

    @property
    def loss_vocab_rows(self) -> torch.Tensor | None:
        """The logits the loss reads: the answer tokens' (loss_over = "answers"), else all (None)."""
        return self.answer_token_ids if self.loss_over == "answers" else None

    def loss_of(self, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The counterfactual cross-entropy of `logits` (over loss_vocab_rows) for examples `rows`."""
        target = self.target[rows] if self.loss_over == "answers" else self.answer_token_ids[self.target[rows]]
        return F.cross_entropy(logits.float(), target)

    def minibatch(self, site: Site, rows: torch.Tensor):
        """(runner, the prepared inputs of examples `rows` at the site's position)."""
        runner, prep = self.prepared(site)
        return runner, prep.select(self.base_idx[rows])

    @torch.no_grad()
    def predict(self, site: Site, fn: Callable) -> torch.Tensor:
        """Predicted answer index on every distinct input (no intervention when fn is identity)."""
        runner, prep = self.prepared(site)
        out = []
        for i in range(0, len(self.inputs), EVAL_BATCH):
            sub = prep.select(torch.arange(i, min(i + EVAL_BATCH, len(self.inputs))))
            out.append(runner.logits(sub, fn, site=site, vocab_rows=self.answer_token_ids).argmax(-1))
        return torch.cat(out)

    def dii_fn(self, site: Site, module, variable: str | None = None) -> Callable:
        """fn(h, rows) applying `module` with each example's sources at this site: one source,
        the variable's, with `variable` (module(h, source)); else all (module(h, sources, active))."""
        acts = self.site_acts(site)
        if variable is not None:
            j = self.variables.index(variable)
            return lambda h, rows: module(h, acts[self.src_idx[rows, j]].to(h.dtype))
        return lambda h, rows: module(h, acts[self.src_idx[rows]].to(h.dtype), self.active[rows])

    def rows_for_set(self, rows: torch.Tensor, variables: list[str]) -> torch.Tensor:
        name = "+".join(variables)
        mask = torch.tensor([self.set_names[i] == name for i in rows.tolist()], dtype=torch.bool, device=rows.device)
        return rows[mask]

    @torch.no_grad()
    def correct(self, site: Site, rows: torch.Tensor, fn: Callable) -> torch.Tensor:
        """Per example in `rows`: does the intervened network give the counterfactual answer?"""
        return self.answers(site, rows, fn) == self.target[rows]

    @torch.no_grad()
    def answers(self, site: Site, rows: torch.Tensor, fn: Callable) -> torch.Tensor:
        """Per example in `rows`: the intervened network's answer (an index into answer_values)."""
        out = []
        for i in range(0, rows.numel(), EVAL_BATCH):
            r = rows[i:i + EVAL_BATCH]
            logits = self.logits(site, r, fn, vocab_rows=self.answer_token_ids)  # argmax over the answers only
            out.append(logits.argmax(-1))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=rows.device)
