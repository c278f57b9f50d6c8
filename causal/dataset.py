"""Counterfactual datasets: (base input, one source input per intervened variable) pairs
labelled with the causal model's counterfactual output, the targets DAS trains on.

Generation is seeded and balanced over counterfactual output values; splits can hold
out input values (test uses only held-out values, train none), the control against
spurious alignments; JSONL round trip (same seed, same bytes).

Contrastive generation (`contrastive=True`) draws examples in pairs that share a base and
whose sources give two different counterfactual outputs. Then no rule that reads the base
alone can beat chance, so an alignment has to carry what the source contributes. Without
it, a hypothesis can look right for the wrong reason: for "A = identity of a" in
hierarchical equality over 100 objects, a swapped-in a almost never equals the base's b,
so 99% of counterfactual outputs are those of "set a == b to False", which a subspace
holding the equality relation (not a's identity) reproduces.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from typing import Iterator

from causal.errors import CausalModelError, require_count
from causal.model import CausalModel
from causal.tasks.task import Task
from causal.example import CounterfactualExample
from causal.sampling import (balanced, check_allowed, contrastive_examples, normalize_sets, resolve_model,
                             show_values)

# Draws allowed to find one input that uses only allowed values (disjoint splits).
MAX_INPUT_TRIES = 100_000
LARGE_REQUEST = 20_000  # examples from which generation shows a progress bar


@dataclass
class _Recipe:
    """How a dataset was generated, so a disjoint split can draw fresh examples the same way."""

    source: CausalModel | Task
    hypothesis: str | None
    intervened: list[list[str]]
    balance: bool
    seed: int | str
    contrastive: bool = False


class CounterfactualDataset:
    def __init__(
        self,
        examples: list[CounterfactualExample],
        model: CausalModel | None = None,
        task: Task | None = None,
        held_out: dict[str, list] | None = None,
        recipe: _Recipe | None = None,
    ):
        self.examples = list(examples)
        self.model = model
        self.task = task
        self.held_out = held_out  # set on splits made disjoint: {variable: held-out values}
        self._recipe = recipe

    # ---- generation --------------------------------------------------------------------
    @classmethod
    def generate(
        cls,
        model_or_task: CausalModel | Task,
        n: int,
        intervened: list[list[str]] | list[str] | None = None,
        seed: int | str = 0,
        hypothesis: str | None = None,
        balance: bool = True,
        min_changed: float | None = None,
        allowed_values: dict[str, list] | None = None,
        contrastive: bool = False,
    ) -> "CounterfactualDataset":
        """n examples spread evenly over the intervened-variable sets (default: each
        intermediate variable alone). A plain string in `intervened` is a one-variable set.
        `allowed_values` restricts input variables (in base and every source) to given values.
        `contrastive`: examples come in pairs sharing a base, their sources giving different
        counterfactual outputs (bases where every source gives the same output are redrawn),
        so a rule that reads only the base is right on at most half of them (with an odd
        count per variable set, one example has no partner)."""
        model, task, sampler = resolve_model(model_or_task, hypothesis)
        sets = normalize_sets(model, intervened)
        require_count(n, "n (the number of examples)", 1, CausalModelError)
        if isinstance(seed, bool) or not isinstance(seed, (int, str)):
            raise CausalModelError(f"seed must be an integer or a string, got {seed!r}")
        allowed = check_allowed(model, allowed_values)
        rng = random.Random(seed)

        def draw_input() -> dict:
            if not allowed:
                return sampler(rng)
            if task is None:  # a plain model samples uniformly: draw straight from the allowed values
                return {v: rng.choice(allowed.get(v) or model.variables[v]) for v in model.inputs}
            for _ in range(MAX_INPUT_TRIES):
                x = sampler(rng)
                if all(x[v] in vals for v, vals in allowed.items()):
                    return x
            raise CausalModelError(
                f"the task's sampler never drew an input with {show_values(allowed)} in {MAX_INPUT_TRIES} tries; "
                "allow more values (a larger test_fraction) for those variables"
            )

        from tqdm.auto import tqdm

        # Large requests take a while (one causal-model run per draw, rejections included): show it.
        bar = tqdm(desc=f"counterfactuals ({n:,} wanted)", unit=" draws", disable=n < LARGE_REQUEST, leave=False)

        def draw_source(base: dict) -> dict:
            if task is None or task.source_sampler is None:
                return draw_input()
            source = task.source_sampler(rng, base)
            bad = {v: source[v] for v, vals in allowed.items() if source.get(v) not in vals}
            if bad:
                raise CausalModelError(f"task {task.name!r}'s source sampler drew "
                                       f"{', '.join(f'{v} = {x!r}' for v, x in bad.items())}, outside the "
                                       f"values allowed here ({show_values(allowed)}); it must keep to the base's values")
            return source

        def draw(variables: list[str], base: dict | None = None) -> CounterfactualExample:
            bar.update(1)
            base = draw_input() if base is None else base
            sources = [draw_source(base) for _ in variables]
            out = model.output
            base_output = model.run(base)[out]
            cf = model.interchange(base, dict(zip(variables, sources)))[out]
            return CounterfactualExample(base, sources, list(variables), base_output, cf)

        examples: list[CounterfactualExample] = []
        try:
            for i, variables in enumerate(sets):
                n_set = n // len(sets) + (1 if i < n % len(sets) else 0)
                if n_set == 0:
                    continue
                if contrastive:
                    examples += contrastive_examples(model, variables, n_set, draw, rng, balance)
                elif not balance:
                    examples += [draw(variables) for _ in range(n_set)]
                else:
                    examples += balanced(model, variables, n_set, draw, rng)
        finally:  # a sampler that gives up raises: its bar must not stay on the terminal
            bar.close()
        rng.shuffle(examples)
        recipe = _Recipe(model_or_task, hypothesis, sets, balance, seed, contrastive)
        dataset = cls(examples, model=model, task=task, recipe=recipe)
        if min_changed is not None and dataset.changed_share() < min_changed:
            raise CausalModelError(
                f"only {dataset.changed_share():.1%} of examples change the output when intervening on {sets}, "
                f"below min_changed={min_changed:.1%}; intervene on variables the output depends on, or lower min_changed"
            )
        return dataset

    # ---- access ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[CounterfactualExample]:
        return iter(self.examples)

    def __getitem__(self, i: int) -> CounterfactualExample:
        return self.examples[i]

    @property
    def variable_sets(self) -> list[list[str]]:
        seen: list[list[str]] = []
        for ex in self.examples:
            if ex.variables not in seen:
                seen.append(ex.variables)
        return seen

    def for_variables(self, variables: list[str] | str) -> "CounterfactualDataset":
        """The examples that intervene on exactly this variable set."""
        variables = [variables] if isinstance(variables, str) else list(variables)
        picked = [ex for ex in self.examples if ex.variables == variables]
        if not picked:
            raise CausalModelError(f"no examples intervene on {variables}; the dataset has {self.variable_sets}")
        return CounterfactualDataset(picked, self.model, self.task, self.held_out)

    def changed_share(self) -> float:
        """Share of examples whose counterfactual output differs from the base output."""
        if not self.examples:
            return 0.0
        return sum(ex.changed for ex in self.examples) / len(self.examples)

    def output_counts(self) -> dict:
        counts: dict = {}
        for ex in self.examples:
            counts[ex.counterfactual_output] = counts.get(ex.counterfactual_output, 0) + 1
        return counts

    # ---- splits ------------------------------------------------------------------------
    def split(
        self,
        test_fraction: float = 0.2,
        disjoint_on: dict[str, list] | list[str] | None = None,
        seed: int = 0,
    ) -> tuple["CounterfactualDataset", "CounterfactualDataset"]:
        """(train, test). With `disjoint_on`, test examples use only held-out values of those
        input variables (in base and all sources) and train examples none. `disjoint_on` is
        {variable: held-out values} or a list of variables (values picked with `seed`;
        variables with the same value set share held-out values, so a == b stays possible).
        A generated dataset draws both parts afresh under that constraint (filtering would
        keep few examples when several variables are held out); a loaded one is filtered."""
        if isinstance(seed, bool) or not isinstance(seed, (int, str)):
            raise CausalModelError(f"seed must be an integer or a string, got {seed!r}")
        if isinstance(test_fraction, bool) or not 0 < test_fraction < 1:
            raise CausalModelError(f"test_fraction must be between 0 and 1, got {test_fraction!r}")
        if len(self.examples) < 2:
            raise CausalModelError("a dataset needs at least 2 examples to split; generate more")
        n_test = min(len(self.examples) - 1, max(1, round(test_fraction * len(self.examples))))
        if disjoint_on is None:
            order = list(range(len(self.examples)))
            random.Random(seed).shuffle(order)
            test = [self.examples[i] for i in sorted(order[:n_test])]
            train = [self.examples[i] for i in sorted(order[n_test:])]
            return self._like(train), self._like(test)

        held = self._held_out_values(disjoint_on, test_fraction, seed)
        if self._recipe is not None:
            r = self._recipe
            domains = {v: self.model.variables[v] for v in held}
            kept = {v: [x for x in domains[v] if x not in held[v]] for v in held}
            common = dict(intervened=r.intervened, hypothesis=r.hypothesis, balance=r.balance,
                          contrastive=r.contrastive)
            train = CounterfactualDataset.generate(
                r.source, len(self.examples) - n_test, seed=f"{r.seed}/{seed}/train", allowed_values=kept, **common
            )
            test = CounterfactualDataset.generate(
                r.source, n_test, seed=f"{r.seed}/{seed}/test", allowed_values=held, **common
            )
            train.held_out = test.held_out = held
            return train, test

        def uses(ex: CounterfactualExample, held_only: bool) -> bool:
            inputs = [ex.base, *ex.sources]
            flags = [x[v] in vals for x in inputs for v, vals in held.items()]
            return all(flags) if held_only else any(flags)

        train = [ex for ex in self.examples if not uses(ex, held_only=False)]
        test = [ex for ex in self.examples if uses(ex, held_only=True)]
        if not train or not test:
            raise CausalModelError(
                f"holding out {show_values(held)} leaves {len(train)} train and {len(test)} test examples; "
                "split the generated dataset (it draws fresh examples) or hold out fewer variables"
            )
        return self._like(train, held), self._like(test, held)

    def _like(self, examples: list[CounterfactualExample], held: dict | None = None) -> "CounterfactualDataset":
        return CounterfactualDataset(examples, self.model, self.task, held)

    def _held_out_values(self, disjoint_on: dict | list, test_fraction: float, seed: int) -> dict[str, list]:
        inputs = self.model.inputs if self.model else list(self.examples[0].base) if self.examples else []
        names = list(disjoint_on) if isinstance(disjoint_on, (dict, list, tuple)) else None
        if names is None:
            raise CausalModelError("disjoint_on must be {variable: held-out values} or a list of input variables")
        for var in names:
            if var not in inputs:
                raise CausalModelError(
                    f"disjoint_on names {var!r}, which is not an input variable; choose from {inputs}"
                )
        if isinstance(disjoint_on, dict):
            held = {}
            for var, values in disjoint_on.items():
                values = list(values)
                if not values:
                    raise CausalModelError(f"disjoint_on gives no held-out values for {var!r}; list at least one")
                domain = self._domain(var)
                for value in values:
                    if value not in domain:
                        raise CausalModelError(f"held-out value {value!r} of {var!r} is not one of its values")
                if len(set(map(repr, values))) >= len(domain):
                    raise CausalModelError(f"disjoint_on holds out every value of {var!r}; leave some for training")
                held[var] = values
            return held
        rng = random.Random(seed)
        by_domain: dict[str, list] = {}
        held = {}
        for var in names:
            domain = self._domain(var)
            key = repr(domain)
            if key not in by_domain:
                if len(domain) < 2:
                    raise CausalModelError(f"{var!r} has fewer than 2 values; it cannot be split disjointly")
                k = min(len(domain) - 1, max(1, round(test_fraction * len(domain))))
                by_domain[key] = rng.sample(domain, k)
            held[var] = by_domain[key]
        return held

    def _domain(self, var: str) -> list:
        if self.model is not None:
            return list(self.model.variables[var])
        seen = {repr(x[var]): x[var] for ex in self.examples for x in (ex.base, *ex.sources)}
        return [seen[k] for k in sorted(seen)]

    # ---- files -------------------------------------------------------------------------
    def to_jsonl(self, path: str | os.PathLike) -> None:
        """One JSON object per example; written to a temp file then renamed."""
        from causal.io import atomic_write_text

        atomic_write_text(path, "".join(json.dumps(ex.to_dict()) + "\n" for ex in self.examples))

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike, model: CausalModel | None = None) -> "CounterfactualDataset":
        examples = []
        try:
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        examples.append(CounterfactualExample.from_dict(json.loads(line)))
                    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                        raise CausalModelError(
                            f"{path}:{lineno} is not a counterfactual example ({type(exc).__name__}: {exc}); "
                            "regenerate the file with CounterfactualDataset.to_jsonl"
                        ) from exc
        except OSError as exc:
            raise CausalModelError(f"cannot read dataset {path}: {exc}; check the path") from exc
        return cls(examples, model=model)


def can_distinguish(
    model_a: CausalModel,
    model_b: CausalModel,
    dataset: CounterfactualDataset,
    alignment: dict[str, str] | None = None,
) -> float:
    """Share of examples on which the two models' counterfactual outputs differ. `alignment`
    maps model_a's intervened variable names to model_b's where they differ."""
    if not len(dataset):
        raise CausalModelError("can_distinguish needs a non-empty dataset")
    alignment = alignment or {}
    out_a, out_b = model_a.output, model_b.output
    differ = 0
    for ex in dataset:
        cf_a = model_a.interchange(ex.base, ex.source_for())[out_a]
        cf_b = model_b.interchange(ex.base, {alignment.get(v, v): s for v, s in ex.source_for().items()})[out_b]
        differ += cf_a != cf_b
    return differ / len(dataset)
