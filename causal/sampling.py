"""How counterfactual examples are drawn: the intervened-variable sets, allowed values,
balance over counterfactual outputs, and contrastive pairs (see causal.dataset)."""

from __future__ import annotations

import random

from causal.errors import CausalModelError
from causal.example import CounterfactualExample
from causal.model import CausalModel
from causal.tasks.task import Task

# Draws allowed per example before a counterfactual output value counts as unreachable.
DRAWS_PER_EXAMPLE = 200
MIN_DRAWS = 20_000
# Sources drawn for one base (contrastive) before giving that base up for a fresh one.
SOURCE_TRIES_PER_BASE = 200


def resolve_model(model_or_task, hypothesis):
    if isinstance(model_or_task, Task):
        model = model_or_task.hypothesis(hypothesis)
        return model, model_or_task, model_or_task.sample_input
    if isinstance(model_or_task, CausalModel):
        if hypothesis is not None:
            raise CausalModelError("hypothesis= picks a model of a Task; with a CausalModel, leave it out")
        return model_or_task, None, model_or_task.sample_input
    raise CausalModelError(f"generate takes a CausalModel or a Task, got {type(model_or_task).__name__}")


def normalize_sets(model: CausalModel, intervened) -> list[list[str]]:
    if intervened is None:
        if not model.intermediates:
            raise CausalModelError(f"model {model.name!r} has no intermediate variables; pass intervened=[[...]]")
        return [[v] for v in model.intermediates]
    if isinstance(intervened, str) or not intervened:
        raise CausalModelError('intervened must be a list of variable sets, e.g. [["V1"], ["V2"]]')
    sets = []
    for entry in intervened:
        variables = [entry] if isinstance(entry, str) else list(entry)
        if not variables:
            raise CausalModelError("an intervened variable set is empty; list at least one variable")
        for v in variables:
            if v not in model.variables:
                raise CausalModelError(
                    f"intervened variable {v!r} is not in model {model.name!r}; its variables are {list(model.variables)}"
                )
        if len(set(variables)) != len(variables):
            raise CausalModelError(f"intervened set {variables} names a variable twice")
        sets.append(variables)
    return sets


def check_allowed(model: CausalModel, allowed_values: dict | None) -> dict[str, list]:
    allowed = {}
    for var, values in (allowed_values or {}).items():
        if var not in model.inputs:
            raise CausalModelError(f"allowed_values names {var!r}, which is not an input variable of {model.name!r}")
        values = list(values)
        if not values:
            raise CausalModelError(f"allowed_values gives {var!r} no values; list at least one")
        allowed[var] = values
    return allowed


def balanced(model: CausalModel, variables: list[str], n: int, draw, rng: random.Random) -> list[CounterfactualExample]:
    """Rejection sampling into equal quotas per counterfactual output value."""
    values = model.variables[model.output]
    quota = {i: n // len(values) for i in range(len(values))}
    for i in rng.sample(range(len(values)), n % len(values)):
        quota[i] += 1
    index = {repr(v): i for i, v in enumerate(values)}
    kept: list[CounterfactualExample] = []
    budget = max(MIN_DRAWS, DRAWS_PER_EXAMPLE * n)
    for _ in range(budget):
        ex = draw(variables)
        i = index[repr(ex.counterfactual_output)]
        if quota[i] > 0:
            quota[i] -= 1
            kept.append(ex)
            if len(kept) == n:
                return kept
    missing = [values[i] for i, q in quota.items() if q > 0]
    raise CausalModelError(
        f"intervening on {variables}, counterfactual output {model.output}={missing[0]!r} "
        f"(and {len(missing) - 1} other values) came up too rarely in {budget} draws to balance {n} examples; "
        "pass balance=False or intervene on other variables"
    )


def output_quota(model: CausalModel, n: int, rng: random.Random, values: list | None = None) -> dict[str, int]:
    """Equal shares of n per output value (keyed by repr), the remainder to random values."""
    values = model.variables[model.output] if values is None else values
    quota = {repr(v): n // len(values) for v in values}
    for v in rng.sample(values, n % len(values)):
        quota[repr(v)] += 1
    return quota


def contrastive_examples(model: CausalModel, variables: list[str], n: int, draw, rng: random.Random,
                 balance: bool) -> list[CounterfactualExample]:
    """Pairs (base, source 1), (base, source 2) whose counterfactual outputs differ. `balance`
    spreads the pairs' first members evenly over the output values; for a two-valued output
    the second members then balance exactly too, and quotas on both could deadlock when the
    values left to fill cannot pair up."""
    n_pairs, single = divmod(n, 2)
    if not balance:
        return _contrastive(model, variables, n, draw, None)
    try:
        return _contrastive(model, variables, n, draw, output_quota(model, n_pairs + single, rng))
    except CausalModelError:
        # Some output values cannot start a contrastive pair for these variables (an
        # attribute variable changes only the answers that ask for that attribute): balance
        # over the values a pilot of bases shows can.
        reachable = _pair_outputs(model, variables, draw)
        if not reachable:
            raise
        return _contrastive(model, variables, n, draw, output_quota(model, n_pairs + single, rng, reachable))


def _pair_outputs(model: CausalModel, variables: list[str], draw, n_bases: int = 300) -> list:
    """The output values, in the model's order, that a pilot of bases with a contrastive
    partner gave as their first member's counterfactual output."""
    seen = set()
    for _ in range(n_bases):
        first = draw(variables)
        for _ in range(SOURCE_TRIES_PER_BASE):
            if draw(variables, base=dict(first.base)).counterfactual_output != first.counterfactual_output:
                seen.add(repr(first.counterfactual_output))
                break
    return [v for v in model.variables[model.output] if repr(v) in seen]


def _contrastive(model: CausalModel, variables: list[str], n: int, draw, quota: dict[str, int] | None):
    kept: list[CounterfactualExample] = []
    budget = max(MIN_DRAWS, DRAWS_PER_EXAMPLE * n)
    draws = 0
    while len(kept) < n and draws < budget:
        first = draw(variables)
        draws += 1
        key = repr(first.counterfactual_output)
        if quota is not None and quota.get(key, 0) == 0:
            continue
        partner = None
        if len(kept) < n - 1:  # with an odd count, the last example has no partner
            for _ in range(min(SOURCE_TRIES_PER_BASE, budget - draws)):
                second = draw(variables, base=dict(first.base))  # its own copy: examples never share a dict
                draws += 1
                if second.counterfactual_output != first.counterfactual_output:
                    partner = second
                    break
            if partner is None:  # no source changes the output for this base: draw another base
                continue
        kept += [first] if partner is None else [first, partner]
        if quota is not None:
            quota[key] -= 1
    if len(kept) < n:
        raise CausalModelError(
            f"intervening on {variables}, only {len(kept)} of {n} contrastive examples were found in {budget} draws: "
            f"for few bases do sources give two different values of {model.output}; "
            "pass contrastive=False or intervene on variables the output depends on"
        )
    return kept


def show_values(values: dict) -> str:
    return ", ".join(f"{v} in {vals}" for v, vals in values.items())
