"""Indirect object identification (IOI), the MIB causal-variable track's first task, written
here from its description: "When Mary and John went to the store , John gave a drink to"
-> " Mary". Two names are introduced; the subject (S) repeats one of them; the answer is the
other one, the indirect object (IO).

Hypotheses (both over the inputs n1, n2 and s_first, whether the repeated name is n1):
  output_position  P = which introduced name is the IO (0: n1, 1: n2); O = the name there.
                   Interchanging P makes the base answer with its *other* name.
  output_token     T = the IO name itself; O = T. Interchanging T makes the base answer
                   with the *source's* IO name, which need not occur in the base prompt.
A network that copies "the name at the IO position" aligns with P; one that carries the
answer's identity aligns with T.
"""

from __future__ import annotations

import random

from causal.model import CausalModel
from causal.tasks.task import Task

NAMES = ["Mary", "John", "Anna", "Paul", "Lisa", "Mark", "Emma", "Tom"]
PLACES = ["store", "park", "school", "office"]
OBJECTS = ["drink", "book", "ball", "key"]


def ioi_hypotheses() -> dict[str, CausalModel]:
    inputs = {"n1": list(NAMES), "n2": list(NAMES), "s_first": [False, True]}
    position = CausalModel(
        {**inputs, "P": [0, 1], "O": list(NAMES)},
        {"P": ["s_first"], "O": ["n1", "n2", "P"]},
        {"P": lambda s_first: 1 if s_first else 0, "O": lambda n1, n2, P: (n1, n2)[P]},
        name="output_position",
        descriptions={"P": "position of the IO among the two names (0: first, 1: second)",
                      "O": "the name at that position"},
    )
    token = CausalModel(
        {**inputs, "T": list(NAMES), "O": list(NAMES)},
        {"T": ["n1", "n2", "s_first"], "O": ["T"]},
        {"T": lambda n1, n2, s_first: n2 if s_first else n1, "O": lambda T: T},
        name="output_token",
        descriptions={"T": "the IO name (the one not repeated)", "O": "T"},
    )
    return {"output_position": position, "output_token": token}


def ioi_sampler(rng: random.Random) -> dict:
    n1, n2 = rng.sample(NAMES, 2)
    return {"n1": n1, "n2": n2, "s_first": rng.random() < 0.5}


def _segment(inputs: dict):
    # Place and object vary with the names (a fixed function of the inputs, so the causal model
    # stays over n1, n2, s_first) to keep the prompts from being one fixed string.
    k = NAMES.index(inputs["n1"]) + NAMES.index(inputs["n2"])
    s = inputs["n1"] if inputs["s_first"] else inputs["n2"]
    return [
        ("When", None), (f" {inputs['n1']}", "n1"), (" and", None), (f" {inputs['n2']}", "n2"),
        (f" went to the {PLACES[k % len(PLACES)]} ,", None), (f" {s}", "s"),
        (f" gave a {OBJECTS[k % len(OBJECTS)]} to", None),
    ]


def ioi() -> Task:
    return Task(
        name="ioi",
        description="indirect object identification: 'When A and B went to the store , B gave a drink to' -> A",
        hypotheses=ioi_hypotheses(),
        default_hypothesis="output_position",
        input_kind="tokens",
        answers={n: f" {n}" for n in NAMES},
        sampler=ioi_sampler,
        segmenter=_segment,
        position_names=["n1", "n2", "s"],
        vocabulary=["When", "and", "went", "to", "the", ",", "gave", "a", *NAMES, *PLACES, *OBJECTS],
    )
