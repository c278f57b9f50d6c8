"""Hierarchical equality (Geiger et al., "Finding alignments between interpretable causal
variables and distributed neural representations", the DAS paper), vector rendering.

Inputs a, b, c, d are object ids; output O = (a == b) == (c == d). Each object is a fixed
random vector in R^4 and the network reads the 16-dim concatenation, as in the paper.
"""

from __future__ import annotations

import random

from causal.model import CausalModel
from causal.tasks.task import Task

N_OBJECTS = 100
OBJECT_DIM = 4
INPUTS = ["a", "b", "c", "d"]


def equality_hypotheses(objects: list) -> dict[str, CausalModel]:
    """The three hypotheses of the paper over any list of object values (ids or words)."""
    inputs = {name: list(objects) for name in INPUTS}
    both = CausalModel(
        {**inputs, "V1": [False, True], "V2": [False, True], "O": [False, True]},
        {"V1": ["a", "b"], "V2": ["c", "d"], "O": ["V1", "V2"]},
        {"V1": lambda a, b: a == b, "V2": lambda c, d: c == d, "O": lambda V1, V2: V1 == V2},
        name="both_equalities",
        descriptions={"V1": "a == b", "V2": "c == d", "O": "V1 == V2"},
    )
    left = CausalModel(
        {**inputs, "V1": [False, True], "O": [False, True]},
        {"V1": ["a", "b"], "O": ["V1", "c", "d"]},
        {"V1": lambda a, b: a == b, "O": lambda V1, c, d: V1 == (c == d)},
        name="left_equality",
        descriptions={"V1": "a == b", "O": "V1 == (c == d)"},
    )
    first = CausalModel(
        {**inputs, "A": list(objects), "O": [False, True]},
        {"A": ["a"], "O": ["A", "b", "c", "d"]},
        {"A": lambda a: a, "O": lambda A, b, c, d: (A == b) == (c == d)},
        name="first_argument",
        descriptions={"A": "copy of a", "O": "(A == b) == (c == d)"},
    )
    return {"both_equalities": both, "left_equality": left, "first_argument": first}


def equality_sampler(objects: list):
    """Each pair is equal with probability 1/2, so V1, V2 and O are all balanced."""

    def sample(rng: random.Random) -> dict:
        out = {}
        for left, right in (("a", "b"), ("c", "d")):
            x = rng.choice(objects)
            if rng.random() < 0.5:
                y = x
            else:
                y = rng.choice(objects)
                while y == x:
                    y = rng.choice(objects)
            out[left], out[right] = x, y
        return out

    return sample


def object_vectors(n_objects: int = N_OBJECTS, dim: int = OBJECT_DIM, seed: int = 0) -> list[list[float]]:
    rng = random.Random(seed)
    return [[rng.uniform(-1.0, 1.0) for _ in range(dim)] for _ in range(n_objects)]


def hierarchical_equality(n_objects: int = N_OBJECTS, dim: int = OBJECT_DIM, seed: int = 0) -> Task:
    objects = list(range(n_objects))
    vectors = object_vectors(n_objects, dim, seed)

    def vectorize(inputs: dict) -> list[float]:
        return [x for name in INPUTS for x in vectors[inputs[name]]]

    return Task(
        name="hierarchical_equality",
        description=f"(a == b) == (c == d) over {n_objects} random objects in R^{dim}; an MLP reads the {4 * dim}-dim concatenation",
        hypotheses=equality_hypotheses(objects),
        default_hypothesis="both_equalities",
        input_kind="vectors",
        answers={False: 0, True: 1},
        sampler=equality_sampler(objects),
        vectorizer=vectorize,
    )
