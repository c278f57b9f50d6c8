"""A task from a causal model and a prompt template, the short way to write your own:

    task = template_task(
        "same_color", model,                       # a CausalModel over inputs x, y
        template="{x} and {y} : same ?",            # each {field} is an input variable and a named position
        answers={True: " yes", False: " no"},       # the answer text of each output value
    )

Inputs are drawn uniformly from their value lists unless a `sampler` is given. A field that
the tokenizer splits into several tokens is addressed at its last token (`encode`'s rule).
"""

from __future__ import annotations

import random
import string
from typing import Any, Callable

from causal.errors import CausalModelError
from causal.model import CausalModel
from causal.tasks.task import Segment, Task


def parse_template(template: str, inputs: list[str], where: str = "template") -> list[tuple[str, str | None]]:
    """[(literal text, None) | ("", field name)] in order; every field must be an input."""
    if not isinstance(template, str) or not template.strip():
        raise CausalModelError(f"{where}: give a prompt template with {{fields}}, e.g. '{{x}} and {{y}} : same ?'")
    parts: list[tuple[str, str | None]] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise CausalModelError(f"{where}: {template!r} is not a valid template ({e}); write fields as {{name}} "
                               "and a literal brace as {{{{ or }}}}") from None
    for literal, field, spec, conv in parsed:
        if literal:
            parts.append((literal, None))
        if field is None:
            continue
        if spec or conv or not field.isidentifier():
            raise CausalModelError(f"{where}: field {{{field}{'!' + conv if conv else ''}{':' + spec if spec else ''}}} "
                                   "must be a plain input variable name")
        if field not in inputs:
            raise CausalModelError(f"{where}: field {{{field}}} is not an input variable of the causal model; "
                                   f"inputs: {inputs}")
        parts.append(("", field))
    if not any(f for _, f in parts):
        raise CausalModelError(f"{where}: {template!r} has no {{field}}; name at least one input variable")
    return parts


def uniform_sampler(model: CausalModel) -> Callable[[random.Random], dict]:
    def sample(rng: random.Random) -> dict:
        return {v: rng.choice(model.variables[v]) for v in model.inputs}

    return sample


def template_task(name: str, model: CausalModel, template: str, answers: dict[Any, str],
                  sampler: Callable[[random.Random], dict] | None = None,
                  hypotheses: dict[str, CausalModel] | None = None, description: str = "",
                  render_value: Callable[[str, Any], str] | None = None) -> Task:
    """A tokens Task: the main hypothesis `model` (named by its `name`, else "main") plus any
    alternative `hypotheses` over the same inputs; prompts from `template`; answers by value."""
    if not isinstance(model, CausalModel):
        raise CausalModelError(f"task {name!r}: the causal model must be a CausalModel, not {type(model).__name__}")
    parts = parse_template(template, list(model.inputs), where=f"task {name!r} template")
    out_values = model.variables[model.output]
    missing = [v for v in out_values if v not in answers]
    if missing:
        raise CausalModelError(f"task {name!r}: output value(s) {missing} of {model.output!r} have no answer text; "
                               f"give answers for every value in {out_values}")
    texts = [answers[v] for v in out_values]
    if len(set(texts)) != len(texts):
        raise CausalModelError(f"task {name!r}: two output values share an answer text ({texts}); make them differ")
    show = render_value or (lambda field, value: str(value))
    main_name = model.name or "main"
    all_hyps = {main_name: model, **(hypotheses or {})}
    for hname, h in all_hyps.items():
        if sorted(h.inputs) != sorted(model.inputs):
            raise CausalModelError(f"task {name!r}: hypothesis {hname!r} has inputs {h.inputs}; every hypothesis "
                                   f"shares the main one's inputs {model.inputs}")

    def segments(inputs: dict) -> list[Segment]:
        return [(text, None) if field is None else (show(field, inputs[field]), field) for text, field in parts]

    fields = list(dict.fromkeys(f for _, f in parts if f))
    words = {w for text, f in parts if f is None for w in text.split()}
    words |= {str(v) for f in fields for v in model.variables[f]}
    words |= {w for t in texts for w in t.split()}
    return Task(name=name, description=description or f"{template!r} -> {model.output}",
                hypotheses=all_hyps, default_hypothesis=main_name, input_kind="tokens",
                answers={v: answers[v] for v in out_values}, sampler=sampler or uniform_sampler(model),
                segmenter=segments, position_names=fields, vocabulary=sorted(words))
