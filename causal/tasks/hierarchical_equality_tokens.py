"""Hierarchical equality rendered as a prompt of four object words for a small LM:
"o3 o5 o3 o7 ?" -> " false". Same hypotheses as the vector task."""

from __future__ import annotations

from causal.tasks.hierarchical_equality import INPUTS, equality_hypotheses, equality_sampler
from causal.tasks.task import Task

N_OBJECT_TOKENS = 20
CUE = "?"


def hierarchical_equality_tokens(n_objects: int = N_OBJECT_TOKENS) -> Task:
    objects = [f"o{i}" for i in range(n_objects)]

    def segment(inputs: dict):
        # Words separated by single spaces; answers carry the leading space (" true").
        return [(inputs["a"], "a"), (" " + inputs["b"], "b"), (" " + inputs["c"], "c"), (" " + inputs["d"], "d"), (" " + CUE, None)]

    return Task(
        name="hierarchical_equality_tokens",
        description=f"(a == b) == (c == d) over {n_objects} object words; the LM answers true or false after '{CUE}'",
        hypotheses=equality_hypotheses(objects),
        default_hypothesis="both_equalities",
        input_kind="tokens",
        answers={True: " true", False: " false"},
        sampler=equality_sampler(objects),
        segmenter=segment,
        position_names=list(INPUTS),
        vocabulary=[*objects, CUE, "true", "false"],
    )
