"""Indirect object identification (IOI), the MIB causal-variable track's first task, written
here from its description: "When Mary and John went to the store , John gave a drink to"
-> " Mary". Two names are introduced (n1, n2); the subject s repeats one of them; the answer
is the other one, the indirect object (IO). Built with `template_task`, as a user would.

Hypotheses (over the inputs n1, n2 and s, with s one of n1, n2):
  output_position  P = which introduced name is the IO (0: n1, 1: n2); O = the name there.
                   Interchanging P makes the base answer with its *other* name.
  output_token     T = the IO name itself; O = T. Interchanging T makes the base answer
                   with the *source's* IO name, which need not occur in the base prompt.
A network that copies "the name at the IO position" aligns with P; one that carries the
answer's identity aligns with T.

How counterfactual sources are drawn (the task option `counterfactuals`), after the MIB
track's counterfactual datasets:
  "random"      an independent prompt (other names, mostly).
  "s2_io_flip"  the base with its subject s replaced by the other name: the IO flips, so P
                and T predict the same answer (the base's other name); it shows where the
                information that decides the answer is, not which of the two it is.
  "s1_io_flip"  the base with n1 and n2 swapped, s unchanged: the IO name stays, its
                position flips; P predicts the other name, T the base's own answer. These
                pairs tell the two hypotheses apart.
"""

from __future__ import annotations

import random

from causal.errors import CausalModelError
from causal.model import CausalModel
from causal.tasks.task import Task
from causal.tasks.template import template_task

NAMES = ["Mary", "John", "Anna", "Paul", "Lisa", "Mark", "Emma", "Tom"]
TEMPLATE = "When {n1} and {n2} went to the store , {s} gave a drink to"
COUNTERFACTUALS = ("random", "s2_io_flip", "s1_io_flip")


def ioi_hypotheses() -> dict[str, CausalModel]:
    inputs = {"n1": list(NAMES), "n2": list(NAMES), "s": list(NAMES)}
    position = CausalModel(
        {**inputs, "P": [0, 1], "O": list(NAMES)},
        {"P": ["n1", "s"], "O": ["n1", "n2", "P"]},
        {"P": lambda n1, s: 1 if s == n1 else 0, "O": lambda n1, n2, P: (n1, n2)[P]},
        name="output_position",
        descriptions={"P": "position of the IO among the two names (0: first, 1: second)",
                      "O": "the name at that position"},
    )
    token = CausalModel(
        {**inputs, "T": list(NAMES), "O": list(NAMES)},
        {"T": ["n1", "n2", "s"], "O": ["T"]},
        {"T": lambda n1, n2, s: n2 if s == n1 else n1, "O": lambda T: T},
        name="output_token",
        descriptions={"T": "the IO name (the one not repeated)", "O": "T"},
    )
    return {"output_position": position, "output_token": token}


def ioi_sampler(rng: random.Random) -> dict:
    """Two distinct names; the subject repeats either with probability 1/2."""
    n1, n2 = rng.sample(NAMES, 2)
    return {"n1": n1, "n2": n2, "s": n1 if rng.random() < 0.5 else n2}


def s2_io_flip(rng: random.Random, base: dict) -> dict:
    """The base with the subject replaced by the other introduced name."""
    return {**base, "s": base["n2"] if base["s"] == base["n1"] else base["n1"]}


def s1_io_flip(rng: random.Random, base: dict) -> dict:
    """The base with the two introduced names swapped; the subject's name is kept."""
    return {**base, "n1": base["n2"], "n2": base["n1"]}


def ioi(counterfactuals: str = "random") -> Task:
    if counterfactuals not in COUNTERFACTUALS:
        raise CausalModelError(f"ioi option counterfactuals={counterfactuals!r}; use one of {list(COUNTERFACTUALS)}")
    hypotheses = ioi_hypotheses()
    task = template_task(
        "ioi", hypotheses["output_position"], TEMPLATE, {n: f" {n}" for n in NAMES}, sampler=ioi_sampler,
        hypotheses={"output_token": hypotheses["output_token"]},
        description="indirect object identification: 'When A and B went to the store , B gave a drink to' -> A")
    task.source_sampler = {"random": None, "s2_io_flip": s2_io_flip, "s1_io_flip": s1_io_flip}[counterfactuals]
    # output_position and output_token give the same answers; a finetune needs a rule that changes them
    task.changed_rules = {"s": "answer with the subject (the repeated name) instead of the indirect object",
                          "n1": "answer with the first name", "n2": "answer with the second name"}
    return task


ioi.option_choices = {"counterfactuals": COUNTERFACTUALS}  # what a form offers for the option
