"""Finetuning data: task examples (or a variant with a changed rule), JSONL prompt/response
pairs, and their encoding."""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from experiments.errors import ConfigError
from causal.tasks.rules import rule_variant
from experiments.finetune.config import VARIANT_FLAGS, VARIANTS, FinetuneConfig
from interventions.reft_artifact import pad_token_id


# ---- data
@dataclass
class Example:
    prompt: str
    response: str


def task_variant(task, variant: dict | None):
    """The task with a changed rule, as a new Task whose main hypothesis computes it."""
    if not variant:
        return task
    if task.name not in VARIANTS:
        raise ConfigError(f"task {task.name!r} has no variants; tasks with variants: {list(VARIANTS)}")
    for flag in VARIANT_FLAGS:
        if flag in variant and variant[flag] not in (0, 1):
            raise ConfigError(f"finetune config field 'variant': {flag} = {variant[flag]!r}; use 1 (on) or 0 (off)")
    changed, text = (_price_tagging_variant if task.name == "price_tagging" else _equality_variant)(task, variant)
    tag = ",".join(f"{k}={v}" for k, v in sorted(variant.items()))
    return dataclasses.replace(
        task, name=f"{task.name}[{tag}]", description=f"{task.description}; changed rule: {text}",
        hypotheses={changed.name: changed}, default_hypothesis=changed.name)


def _price_tagging_variant(task, variant: dict):
    from causal.model import CausalModel

    lo, hi = int(variant.get("lower_shift", 0)), int(variant.get("upper_shift", 0))
    ignore_lower = bool(variant.get("ignore_lower", 0))  # left := True: only the upper bound counts
    base = task.causal_model
    left_text = "True" if ignore_lower else f"X >= L {lo:+d}"
    shifted = CausalModel(
        {v: list(vals) for v, vals in base.variables.items()},
        {v: list(ps) for v, ps in base.parents.items()},
        {**base.mechanisms,
         "left": (lambda X, L: True) if ignore_lower else (lambda X, L: X >= L + lo),
         "right": lambda X, U: X <= U + hi},
        name=f"boundaries_changed(left: {left_text}, right: X <= U {hi:+d})",
        descriptions={**base.descriptions, "left": left_text, "right": f"X <= U {hi:+d}"},
    )
    return shifted, f"{left_text} and X <= U {hi:+d}"


def _equality_variant(task, variant: dict):
    """O reads one pair's equality (left_only: V1, right_only: V2) instead of comparing both,
    and negate flips it: the answers change on about half of the inputs."""
    from causal.model import CausalModel

    left, right, negate = (bool(variant.get(k, 0)) for k in ("left_only", "right_only", "negate"))
    if left and right:
        raise ConfigError("finetune config field 'variant': left_only and right_only exclude each other; set one")
    rule = "V1" if left else "V2" if right else "V1 == V2"
    text = f"not ({rule})" if negate else rule
    read = {"V1": lambda V1, V2: V1, "V2": lambda V1, V2: V2, "V1 == V2": lambda V1, V2: V1 == V2}[rule]
    base = task.causal_model
    changed = CausalModel(
        {v: list(vals) for v, vals in base.variables.items()},
        {v: list(ps) for v, ps in base.parents.items()},
        {**base.mechanisms, "O": (lambda V1, V2: not read(V1, V2)) if negate else read},
        name=f"output_changed(O = {text})", descriptions={**base.descriptions, "O": text})
    return changed, f"O = {text}"


def task_examples(config: FinetuneConfig) -> tuple[list[Example], list[Example], Any]:
    original = config.load_task()
    task = task_variant(original, config.variant)
    if config.rule is not None:
        task = rule_variant(original, config.rule)
    if config.hypothesis is not None:  # teach another hypothesis of the task (a changed rule written as one)
        task = dataclasses.replace(task, default_hypothesis=config.hypothesis)
    if task.input_kind != "tokens":
        raise ConfigError(f"task {config.task!r} renders vectors, not prompts; finetune a language model on a "
                          f"tokens task (e.g. 'price_tagging') or give a JSONL file as 'data'")

    def examples(n: int, seed: int) -> list[Example]:
        return [Example(task.render(x), task.answer(y)) for x, y in task.factual_data(n, seed=seed)]

    # The task as written (not the changed rule) is what a "zoo" model was trained on.
    return examples(config.n_train, 7919 * config.seed + 1), examples(config.n_eval, 7919 * config.seed + 2), original


def read_jsonl_pairs(path: str | Path) -> list[Example]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data file {str(path)!r} does not exist; give a JSONL file with one "
                          f"{{\"prompt\": ..., \"response\": ...}} object per line")
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{i} is not valid JSON ({e}); fix that line") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not isinstance(row.get("response"), str):
            raise ConfigError(f"{path}:{i} needs string fields 'prompt' and 'response'")
        out.append(Example(row["prompt"], row["response"]))
    if len(out) < 2:
        raise ConfigError(f"{path} holds {len(out)} prompt/response pairs; give at least 2 (one is held out)")
    return out


def jsonl_examples(config: FinetuneConfig) -> tuple[list[Example], list[Example]]:
    """(train, held-out): `data` and `eval_data` when both are given; else `data` shuffled by the
    seed, its eval_fraction held out (a validation split, when `data` is the training file)."""
    if config.eval_data is not None:
        return read_jsonl_pairs(config.data), read_jsonl_pairs(config.eval_data)
    pairs = read_jsonl_pairs(config.data)
    order = list(range(len(pairs)))
    random.Random(config.seed).shuffle(order)
    n_eval = max(1, round(config.eval_fraction * len(pairs)))
    return [pairs[i] for i in order[n_eval:]], [pairs[i] for i in order[:n_eval]]


@dataclass
class Encoded:
    """Right-padded prompt+response ids; labels are -100 outside the response."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    prompt_lengths: torch.Tensor

    def rows(self, idx) -> "Encoded":
        return Encoded(self.input_ids[idx], self.attention_mask[idx], self.labels[idx], self.prompt_lengths[idx])

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_examples(tokenizer, examples: list[Example], max_length: int, add_eos: bool) -> Encoded:
    rows, lengths = [], []
    for ex in examples:
        p = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"]
        r = tokenizer(ex.response, add_special_tokens=False)["input_ids"]
        if add_eos and tokenizer.eos_token_id is not None:
            r = r + [tokenizer.eos_token_id]
        if not p or not r:
            raise ConfigError(f"an example has an empty prompt or response after tokenization: {ex.prompt!r} -> "
                              f"{ex.response!r}; give both some text")
        ids = (p + r)[:max_length]
        if len(p) >= max_length:
            raise ConfigError(f"a prompt is {len(p)} tokens, over max_length = {max_length}; raise max_length")
        rows.append((ids, len(p)))
    width = max(len(ids) for ids, _ in rows)
    pad = pad_token_id(tokenizer)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (ids, p) in enumerate(rows):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        mask[i, :len(ids)] = 1
        labels[i, p:len(ids)] = torch.tensor(ids[p:])
        lengths.append(p)
    return Encoded(input_ids, mask, labels, torch.tensor(lengths, dtype=torch.long))



def words_of(examples: list[Example]) -> list[str]:
    return [t for ex in examples for t in (ex.prompt, ex.response)]
