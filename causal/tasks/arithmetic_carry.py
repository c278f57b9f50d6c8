"""Two-digit addition with the ones-digit carry as the variable of interest:
"2 7 + 3 5 =" -> " 62". Digits are separate words so each has its own position.

`answer = "tens"` (a task option) asks for the tens of the sum instead, "2 7 + 3 5 = tens"
-> " 6": the answer then needs the carry (T = a1 + b1 + C), where a network that answers the
whole sum as one word can read it off a number line without ever forming the carry."""

from __future__ import annotations

import random

from causal.model import CausalModel
from causal.tasks.task import Task

DIGITS = list(range(10))
# 0 + 0 .. 99 + 99, plus 199: forcing the carry on 9x + 9y with ones digit 9 gives 10 * 19 + 9.
SUMS = list(range(200))


def _inputs() -> dict[str, list]:
    return {name: list(DIGITS) for name in ("a1", "a0", "b1", "b0")}


def carry_hypotheses() -> dict[str, CausalModel]:
    inputs = _inputs()
    carry = CausalModel(
        {**inputs, "C": [False, True], "D0": list(DIGITS), "S": list(SUMS)},
        {"C": ["a0", "b0"], "D0": ["a0", "b0"], "S": ["a1", "b1", "C", "D0"]},
        {
            "C": lambda a0, b0: a0 + b0 >= 10,
            "D0": lambda a0, b0: (a0 + b0) % 10,
            "S": lambda a1, b1, C, D0: 10 * (a1 + b1 + int(C)) + D0,
        },
        name="carry",
        descriptions={"C": "a0 + b0 >= 10 (the carry)", "D0": "ones digit of the sum", "S": "the sum"},
    )
    ones_sum = CausalModel(
        {**inputs, "S0": list(range(19)), "S": list(range(199))},  # no forced carry here: at most 99 + 99
        {"S0": ["a0", "b0"], "S": ["a1", "b1", "S0"]},
        {"S0": lambda a0, b0: a0 + b0, "S": lambda a1, b1, S0: 10 * (a1 + b1) + S0},
        name="ones_sum",
        descriptions={"S0": "a0 + b0 (carry and ones digit in one variable)", "S": "the sum"},
    )
    return {"carry": carry, "ones_sum": ones_sum}


TENS = list(range(20))  # a1 + b1 + C, up to 9 + 9 + 1


def tens_hypotheses() -> dict[str, CausalModel]:
    inputs = _inputs()
    carry = CausalModel(
        {**inputs, "C": [False, True], "T": list(TENS)},
        {"C": ["a0", "b0"], "T": ["a1", "b1", "C"]},
        {"C": lambda a0, b0: a0 + b0 >= 10, "T": lambda a1, b1, C: a1 + b1 + int(C)},
        name="carry",
        descriptions={"C": "a0 + b0 >= 10 (the carry)", "T": "tens of the sum"},
    )
    ones_sum = CausalModel(
        {**inputs, "S0": list(range(19)), "T": list(TENS)},
        {"S0": ["a0", "b0"], "T": ["a1", "b1", "S0"]},
        {"S0": lambda a0, b0: a0 + b0, "T": lambda a1, b1, S0: a1 + b1 + int(S0 >= 10)},
        name="ones_sum",
        descriptions={"S0": "a0 + b0 (the carry and the ones digit in one variable)", "T": "tens of the sum"},
    )
    return {"carry": carry, "ones_sum": ones_sum}


def carry_sampler(rng: random.Random) -> dict:
    """Carry with probability 1/2; tens digits uniform."""
    want_carry = rng.random() < 0.5
    while True:
        a0, b0 = rng.choice(DIGITS), rng.choice(DIGITS)
        if (a0 + b0 >= 10) == want_carry:
            return {"a1": rng.choice(DIGITS), "a0": a0, "b1": rng.choice(DIGITS), "b0": b0}


def _segment(inputs: dict):
    return [
        (str(inputs["a1"]), "a1"), (f" {inputs['a0']}", "a0"), (" +", None),
        (f" {inputs['b1']}", "b1"), (f" {inputs['b0']}", "b0"), (" =", None),
    ]


def _segment_tens(inputs: dict):
    return [*_segment(inputs), (" tens", None)]


def arithmetic_carry(answer: str = "sum") -> Task:
    if answer not in ("sum", "tens"):
        from causal.errors import CausalModelError

        raise CausalModelError(f"arithmetic_carry option answer={answer!r}; use 'sum' (the sum as one word) or "
                               "'tens' (the tens of the sum)")
    tens = answer == "tens"
    values = TENS if tens else SUMS
    return Task(
        name="arithmetic_carry",
        description="two-digit addition a1 a0 + b1 b0; variable: the ones-digit carry; answer: "
                    + ("the tens of the sum (a1 + b1 + carry)" if tens else "the sum as one word"),
        hypotheses=tens_hypotheses() if tens else carry_hypotheses(),
        default_hypothesis="carry",
        input_kind="tokens",
        answers={s: f" {s}" for s in values},
        sampler=carry_sampler,
        segmenter=_segment_tens if tens else _segment,
        position_names=["a1", "a0", "b1", "b0"],
        vocabulary=["+", "=", *(["tens"] if tens else []), *(str(s) for s in SUMS)],
    )
