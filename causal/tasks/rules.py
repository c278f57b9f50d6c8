"""A changed rule for a task, written by the user as an expression over its variables (the
same safe expressions as task files): the task whose answer is that expression. A finetune
trains toward it (a finetune config's `rule`); ioi offers "s", answer with the subject."""

from __future__ import annotations

import dataclasses
import random

from causal.errors import CausalModelError
from causal.model import CausalModel
from causal.tasks.spec import check_expression, expression_mechanism


def rule_variant(task, expr: str):
    """The task whose answer is `expr`, evaluated over its main hypothesis' variables (inputs and
    intermediates): a changed rule written by the user. Every answer it gives must be one of the
    task's answers (checked on 200 sampled inputs)."""
    base = task.causal_model
    names = [v for v in base.order if v != base.output]
    where = f"rule {expr!r} for task {task.name!r}"
    expr = check_expression(expr, names, where)
    mechanism = expression_mechanism(expr, where)
    changed = CausalModel(
        {v: list(vals) for v, vals in base.variables.items()},
        {**{v: list(ps) for v, ps in base.parents.items()}, base.output: names},
        {**base.mechanisms, base.output: lambda **values: mechanism(**values)},
        name=f"rule({expr})", descriptions={**base.descriptions, base.output: expr})
    rng = random.Random(0)
    for _ in range(200):
        x = task.sample_input(rng)
        y = changed.run(x)[base.output]
        if y not in task.answers:
            raise CausalModelError(f"{where}: it answers {y!r} on {x}, which is not one of the task's answers "
                                   f"({sorted(map(str, task.answers))[:8]}...); write a rule whose answers the task has")
    return dataclasses.replace(task, name=f"{task.name}[rule={expr}]",
                               description=f"{task.description}; changed rule: {task.changed_rules.get(expr, expr)}",
                               hypotheses={changed.name: changed}, default_hypothesis=changed.name)
