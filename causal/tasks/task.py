"""The shape every built-in task has: a causal model (the main hypothesis plus named
alternatives) and how its inputs become something a network reads and answers."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from causal.model import CausalModel

# One prompt piece: (text, name or None). Named pieces are addressable token positions.
Segment = tuple[str, "str | None"]


@dataclass
class Task:
    name: str
    description: str
    # Hypotheses by name; `default_hypothesis` is the main one. All share input variables.
    hypotheses: dict[str, CausalModel]
    default_hypothesis: str
    # "tokens": render() gives a prompt string for a language model.
    # "vectors": render() gives a list of floats for a classifier (e.g. an MLP).
    input_kind: Literal["tokens", "vectors"]
    # Output value -> answer. tokens: the answer token's text (e.g. " true" or "true");
    # vectors: the class index.
    answers: dict[Any, Any]
    # Balanced input sampler: random.Random -> input dict (inputs of the causal model).
    sampler: Callable[[random.Random], dict]
    # tokens tasks: inputs -> ordered prompt segments; some are named positions.
    segmenter: Callable[[dict], list[Segment]] | None = None
    # vectors tasks: inputs -> flat list of floats.
    vectorizer: Callable[[dict], list[float]] | None = None
    # Named token positions this task offers besides "last" (names of segments).
    position_names: list[str] = field(default_factory=list)
    # Whole-word vocabulary of the prompts and answers, for the zoo's word-level tokenizer.
    vocabulary: list[str] = field(default_factory=list)
    # True when only a pretrained LM can answer (mcqa); the zoo skips it.
    needs_pretrained: bool = False
    # Where it came from: a built-in name, "file.py:build", "package.module:build", a task file.
    source: str = ""
    # How a counterfactual source is drawn for a base: (random.Random, base inputs) -> source
    # inputs, e.g. the base with two names swapped (the MIB track's counterfactual datasets).
    # None: every source is drawn like a base, independently of it.
    source_sampler: Callable[[random.Random, dict], dict] | None = None
    # Changed rules a finetune can train toward, written as expressions over the task's variables
    # (a finetune config's `rule`) -> what each says: ioi's {"s": "answer with the subject"}.
    changed_rules: dict[str, str] = field(default_factory=dict)

    @property
    def causal_model(self) -> CausalModel:
        return self.hypotheses[self.default_hypothesis]

    @property
    def positions(self) -> list[str]:
        return ["last", *self.position_names]

    @property
    def prompt_positions(self) -> list[str]:
        """The named positions in the order a prompt has them, then "last" (its final token):
        how a table or heatmap lays them out, left to right as they are read."""
        if self.segmenter is None:
            return self.positions
        seen = [name for _, name in self.segments(self.sample_input(random.Random(0))) if name in self.position_names]
        order = list(dict.fromkeys(seen))
        return [*order, *[p for p in self.position_names if p not in order], "last"]

    def hypothesis(self, name: str | None = None) -> CausalModel:
        from causal.errors import CausalModelError

        name = name or self.default_hypothesis
        if name not in self.hypotheses:
            raise CausalModelError(
                f"task {self.name!r} has no hypothesis {name!r}; choose one of {sorted(self.hypotheses)}"
            )
        return self.hypotheses[name]

    def sample_input(self, rng: random.Random) -> dict:
        return self.sampler(rng)

    def segments(self, inputs: dict) -> list[Segment]:
        if self.segmenter is None:
            raise TypeError(f"task {self.name!r} renders vectors, not prompts")
        return self.segmenter(inputs)

    def render(self, inputs: dict) -> Any:
        """A prompt string (tokens tasks) or a list of floats (vectors tasks)."""
        if self.input_kind == "vectors":
            return self.vectorizer(inputs)
        return "".join(text for text, _ in self.segments(inputs))

    def answer(self, output_value: Any) -> Any:
        return self.answers[output_value]

    def content_hash(self, n_probe: int = 64) -> str:
        """A hash of what the task does, not how it was written: its graphs and value sets, its
        answers and positions, and the prompts and every hypothesis' values on n_probe inputs
        drawn with a fixed seed. The same hypothesis as a builder, a template or a task file
        hashes the same (the zoo caches its model under this, so how sources are drawn for
        counterfactuals, which the zoo does not train on, is left out)."""
        from causal.io import json_hash

        rng = random.Random(0)
        probes = []
        for _ in range(n_probe):
            x = self.sample_input(rng)
            probes.append([repr(self.render(x)), {h: repr(m.run(x)) for h, m in sorted(self.hypotheses.items())}])
        graphs = {h: {"variables": {v: [repr(x) for x in vals] for v, vals in m.variables.items()},
                      "parents": m.parents} for h, m in sorted(self.hypotheses.items())}
        blob = {"kind": self.input_kind, "answers": {repr(k): repr(v) for k, v in self.answers.items()},
                "positions": self.position_names, "default": self.default_hypothesis, "graphs": graphs,
                "probes": probes}
        return json_hash(blob, default=repr)

    def factual_data(self, n: int, seed: int = 0) -> list[tuple[dict, Any]]:
        """n (inputs, output value) pairs from the main hypothesis, sampled with the task's sampler."""
        rng = random.Random(seed)
        model = self.causal_model
        out = []
        for _ in range(n):
            x = self.sample_input(rng)
            out.append((x, model.run(x)[model.output]))
        return out
