"""The data of a search: its counterfactual datasets (contrastive where the task admits them)
and the prepared splits the cells train and test on ("main", "disjoint", "untrained"), with
the checks that make an IIA mean something (a model that can do the task, enough test
examples). A mixin of `AlignmentSearch`, which holds the config, task, model and sites."""

from __future__ import annotations

import time

import torch

from causal import CounterfactualDataset
from experiments.errors import ConfigError
from experiments.models import untrained_copy
from experiments.search.methods import get_method
from experiments.search.prepared import PreparedSplit


class SearchData:
    def intervened_sets(self) -> list[list[str]]:
        v = self.variables
        sets = [[x] for x in v]
        if len(v) > 1 and not get_method(self.config.method).per_variable:
            sets.append(list(v))
        return sets

    def datasets(self, kind: str = "random") -> tuple[CounterfactualDataset, CounterfactualDataset]:
        """(train, test); kind "random" or "disjoint" (test uses only held-out input values)."""
        if kind not in self._datasets:
            c = self.config
            t0 = time.perf_counter()
            full = self._generate()
            frac = c.n_test / (c.n_train + c.n_test)
            if kind == "random":
                split = full.split(test_fraction=frac, seed=c.seed)
            else:
                split = full.split(test_fraction=frac, disjoint_on=c.disjoint_on or list(self.hypothesis.inputs), seed=c.seed)
            self._datasets[kind] = split
            self.timings[f"dataset_{kind}_s"] = round(time.perf_counter() - t0, 3)
        return self._datasets[kind]

    def _generate(self) -> CounterfactualDataset:
        """The counterfactual examples; contrastive unless the config says otherwise or (by
        default) the task admits no contrastive pairs, which `self.contrastive` then records."""
        from causal import CausalModelError

        c = self.config
        wanted = True if c.contrastive is None else c.contrastive

        def generate(contrastive: bool) -> CounterfactualDataset:
            return CounterfactualDataset.generate(self.task, c.n_train + c.n_test, intervened=self.intervened_sets(),
                                                  seed=c.seed, hypothesis=self.hypothesis_name, contrastive=contrastive)

        try:
            data = generate(wanted)
            self.contrastive = wanted
        except CausalModelError as e:
            if c.contrastive is not None or not wanted:
                raise
            data = generate(False)
            self.contrastive, self.contrastive_note = False, f"the task admits no contrastive pairs ({e})"
        return data

    def split(self, name: str) -> PreparedSplit:
        """"main": the model on the random split; "disjoint": the disjoint split;
        "untrained": a randomly initialised model of the same architecture (no filtering)."""
        if name not in self._splits:
            t0 = time.perf_counter()
            if name == "main":
                model, data, keep = self.model, self.datasets("random"), True
            elif name == "disjoint":
                model, data, keep = self.model, self.datasets("disjoint"), True
            elif name == "untrained":
                model, data, keep = untrained_copy(self.model, self.config.seed), self.datasets("random"), False
            else:
                raise ConfigError(f"unknown split {name!r}; a method's split is 'main', 'disjoint' or 'untrained'")
            split = PreparedSplit(model, self.task, self.hypothesis, self.variables, self.sites, *data,
                                  filter_correct=keep, name=name, loss_over=self.config.loss_over)
            if name == "main":
                self._check_model_accuracy(split)
                self._check_test_size(split)
            self._splits[name] = split
            self.timings[f"context_{name}_s"] = round(time.perf_counter() - t0, 3)
        return self._splits[name]

    context = split  # the name of older callers

    def _check_model_accuracy(self, split: PreparedSplit) -> None:
        """A model that cannot do the task gives a grid of meaningless IIAs: refuse it, naming
        its accuracy and chance (the majority answer's share), unless the config says not to."""
        chance = float(torch.bincount(split.factual).max()) / split.factual.numel()
        if self.config.check_model_accuracy and split.model_accuracy < min(chance + 0.1, 0.99):
            raise ConfigError(
                f"the model answers the task's factual prompts with accuracy {split.model_accuracy:.3f}, near chance "
                f"({chance:.3f}, the majority answer's share): it cannot do task {self.task.name!r}, so no variable "
                "can be aligned. Use a model trained on the task (model = 'zoo' trains one), or set "
                "check_model_accuracy = false to search it anyway")

    def _check_test_size(self, split: PreparedSplit) -> None:
        """Fewer than MIN_TEST_EXAMPLES kept test examples in a variable set is refused: an IIA
        from so few is noise (1 example reads 1.0)."""
        from experiments.search.stats import MIN_TEST_EXAMPLES

        for vs in self.intervened_sets():
            n = int(split.rows_for_set(split.test_rows, vs).numel())
            if n < MIN_TEST_EXAMPLES:
                raise ConfigError(
                    f"config field 'n_test': only {n} test examples are left for {'+'.join(vs)} (of "
                    f"{self.config.n_test} generated, split over {len(self.intervened_sets())} variable sets, kept where "
                    f"the model is right); IIA needs at least {MIN_TEST_EXAMPLES}: raise n_test (>= 100 per set "
                    f"gives an interval of about +/- 0.1)")

