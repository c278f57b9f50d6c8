"""Four-option multiple choice (MCQA), the MIB causal-variable track's task, written here from
its description: a fact, then four options each behind a symbol, and the network answers
with the symbol of the option that matches the fact.

    "ball is red . which colour ? A blue B red C green D pink answer :" -> " B"

Inputs: the object, its colour, the four option colours c1..c4 (one of them the colour) and
the four option symbols s1..s4 (four distinct letters of A-H in order, so a symbol is not
tied to a slot). Built with `template_task`. A zoo model learns it in about a minute.

Hypotheses:
  answer_pointer  P = which option holds the colour (0-3); O = the symbol of option P.
                  Interchanging P makes the base answer with its own symbol in the source's
                  slot (MIB's "answer pointer").
  answer_token    T = the answer symbol itself; O = T. Interchanging T makes the base answer
                  with the source's symbol, which need not be among the base's options
                  (MIB's "answer").
"""

from __future__ import annotations

import random

from causal.model import CausalModel
from causal.tasks.task import Task
from causal.tasks.template import template_task

OBJECTS = ["ball", "cup", "book", "hat", "box", "pen", "car", "bag"]
COLORS = ["red", "blue", "green", "yellow", "black", "white", "brown", "pink"]
SYMBOLS = ["A", "B", "C", "D", "E", "F", "G", "H"]
N_OPTIONS = 4
TEMPLATE = "{obj} is {color} . which colour ? {s1} {c1} {s2} {c2} {s3} {c3} {s4} {c4} answer :"
OPTION_COLORS = [f"c{i}" for i in range(1, N_OPTIONS + 1)]
OPTION_SYMBOLS = [f"s{i}" for i in range(1, N_OPTIONS + 1)]


def _pointer(color, *options) -> int:
    # The sampler puts the colour among the options exactly once; for other settings
    # (reachable only by intervening on an input), point at the first option.
    return options.index(color) if color in options else 0


def mcqa4_hypotheses() -> dict[str, CausalModel]:
    inputs = {"obj": OBJECTS, "color": COLORS, **{c: COLORS for c in OPTION_COLORS},
              **{s: SYMBOLS for s in OPTION_SYMBOLS}}
    pointer = CausalModel(
        {**inputs, "P": list(range(N_OPTIONS)), "O": SYMBOLS},
        {"P": ["color", *OPTION_COLORS], "O": ["P", *OPTION_SYMBOLS]},
        {"P": lambda color, c1, c2, c3, c4: _pointer(color, c1, c2, c3, c4),
         "O": lambda P, s1, s2, s3, s4: (s1, s2, s3, s4)[P]},
        name="answer_pointer",
        descriptions={"P": "which option holds the object's colour (0-3)", "O": "the symbol of that option"},
    )
    token = CausalModel(
        {**inputs, "T": SYMBOLS, "O": SYMBOLS},
        {"T": ["color", *OPTION_COLORS, *OPTION_SYMBOLS], "O": ["T"]},
        {"T": lambda color, c1, c2, c3, c4, s1, s2, s3, s4: (s1, s2, s3, s4)[_pointer(color, c1, c2, c3, c4)],
         "O": lambda T: T},
        name="answer_token",
        descriptions={"T": "the answer symbol itself", "O": "T"},
    )
    return {"answer_pointer": pointer, "answer_token": token}


def mcqa4_sampler(rng: random.Random) -> dict:
    """Four distinct option colours with the object's colour in a uniform slot; four distinct
    symbols in alphabetical order."""
    options = rng.sample(COLORS, N_OPTIONS)
    symbols = sorted(rng.sample(SYMBOLS, N_OPTIONS))
    out = {"obj": rng.choice(OBJECTS), "color": rng.choice(options)}
    out.update(zip(OPTION_COLORS, options))
    out.update(zip(OPTION_SYMBOLS, symbols))
    return out


def mcqa4() -> Task:
    hypotheses = mcqa4_hypotheses()
    return template_task(
        "mcqa4", hypotheses["answer_pointer"], TEMPLATE, {s: f" {s}" for s in SYMBOLS}, sampler=mcqa4_sampler,
        hypotheses={"answer_token": hypotheses["answer_token"]},
        description="four-option multiple choice: 'ball is red . which colour ? A blue B red C green D pink "
                    "answer :' -> B")
