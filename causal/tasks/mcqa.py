"""Multiple-choice colour question a pretrained LM can answer:
"The ball is red. The cup is blue. What color is the ball? Answer:" -> " red".
Variables: answer pointer P (which object is asked: 0 first, 1 second) and answer A."""

from __future__ import annotations

import random

from causal.model import CausalModel
from causal.tasks.task import Task

# Common words that are single GPT-2 tokens with a leading space.
OBJECTS = ["ball", "cup", "book", "hat", "box", "pen", "car", "bag"]
COLORS = ["red", "blue", "green", "yellow", "black", "white", "brown", "pink"]
INPUTS = ["object1", "color1", "object2", "color2", "question"]


def mcqa_hypotheses() -> dict[str, CausalModel]:
    inputs = {"object1": OBJECTS, "color1": COLORS, "object2": OBJECTS, "color2": COLORS, "question": OBJECTS}
    pointer = CausalModel(
        {**inputs, "P": [0, 1], "A": COLORS},
        {"P": ["object1", "object2", "question"], "A": ["P", "color1", "color2"]},
        {
            # The sampler asks about one of the two objects; otherwise point at the second.
            "P": lambda object1, object2, question: 0 if question == object1 else 1,
            "A": lambda P, color1, color2: color1 if P == 0 else color2,
        },
        name="pointer",
        descriptions={"P": "which listed object the question asks about", "A": "that object's colour"},
    )
    first = CausalModel(
        {**inputs, "A": COLORS},
        {"A": ["color1"]},
        {"A": lambda color1: color1},
        name="always_first",
        descriptions={"A": "the first colour mentioned, whatever is asked"},
    )
    return {"pointer": pointer, "always_first": first}


def mcqa_sampler(rng: random.Random) -> dict:
    """Two different objects with two different colours; either object asked with probability 1/2."""
    object1, object2 = rng.sample(OBJECTS, 2)
    color1, color2 = rng.sample(COLORS, 2)
    question = object1 if rng.random() < 0.5 else object2
    return {"object1": object1, "color1": color1, "object2": object2, "color2": color2, "question": question}


def _segment(inputs: dict):
    return [
        ("The", None), (f" {inputs['object1']}", "object1"), (" is", None), (f" {inputs['color1']}", "color1"), (".", None),
        (" The", None), (f" {inputs['object2']}", "object2"), (" is", None), (f" {inputs['color2']}", "color2"), (".", None),
        (" What color is the", None), (f" {inputs['question']}", "question_object"), ("? Answer:", None),
    ]


def _vocabulary() -> list[str]:
    # Whitespace-split words as they appear (punctuation stays attached, "red." / "ball?").
    words = ["The", "is", "What", "color", "the", "Answer:"]
    words += OBJECTS + [f"{o}?" for o in OBJECTS] + COLORS + [f"{c}." for c in COLORS]
    return words


def mcqa() -> Task:
    return Task(
        name="mcqa",
        description="two objects with colours, then a question about one of them; a pretrained LM answers the colour",
        hypotheses=mcqa_hypotheses(),
        default_hypothesis="pointer",
        input_kind="tokens",
        answers={c: f" {c}" for c in COLORS},
        sampler=mcqa_sampler,
        segmenter=_segment,
        position_names=["object1", "color1", "object2", "color2", "question_object"],
        vocabulary=_vocabulary(),
        needs_pretrained=True,
    )
