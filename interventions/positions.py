"""From task inputs to a model batch: tokenize, pad, and resolve the token index each
example intervenes at (so one batch may intervene at different indices)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from interventions.errors import InterventionError


@dataclass
class Batch:
    """Model inputs on device plus, per example, the intervened token index (`positions`,
    None for vector inputs) and the index of its last real token (`answer_positions`,
    where the answer is read; None for vector inputs)."""

    inputs: dict[str, torch.Tensor]
    positions: torch.Tensor | None = None
    answer_positions: torch.Tensor | None = None
    texts: list[Any] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    def select(self, idx) -> "Batch":
        """The examples at `idx` (indices, a slice or a boolean mask)."""
        if isinstance(idx, slice):
            idx = torch.arange(len(self))[idx]
        idx = torch.as_tensor(idx)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        dev_idx = lambda t: idx.to(t.device)  # noqa: E731
        texts = [self.texts[i] for i in idx.tolist()] if self.texts is not None else None
        return Batch(
            inputs={k: v[dev_idx(v)] for k, v in self.inputs.items()},
            positions=None if self.positions is None else self.positions[dev_idx(self.positions)],
            answer_positions=None if self.answer_positions is None else self.answer_positions[dev_idx(self.answer_positions)],
            texts=texts,
        )

    def to(self, device) -> "Batch":
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(self, inputs={k: v.to(device) for k, v in self.inputs.items()},
                       positions=mv(self.positions), answer_positions=mv(self.answer_positions))

    @property
    def seq_len(self) -> int | None:
        ids = self.inputs.get("input_ids")
        return None if ids is None else int(ids.shape[1])


def _forward_takes(model, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(model.hf.forward).parameters
    except (TypeError, ValueError):
        return False


def split_position(position: str) -> tuple[str, int]:
    """A named position "field", "field:last", "field:first" or "field:<offset>" -> (field,
    index into the field's tokens). A field the tokenizer splits into several tokens is
    addressed at its last token unless asked otherwise."""
    name, _, pick = position.partition(":")
    if pick in ("", "last"):
        return name, -1
    if pick == "first":
        return name, 0
    try:
        return name, int(pick)
    except ValueError:
        raise InterventionError(f"position {position!r}: after ':' give 'first', 'last' or an integer offset into "
                                "the field's tokens") from None


def _segment_span(segs, name: str) -> tuple[int, int] | None:
    """(start, end) characters of the last segment called `name`, or None."""
    char, span = 0, None
    for text, seg_name in segs:
        if seg_name == name:
            span = (char, char + len(text))
        char += len(text)
    return span


def encode(model, task, inputs_list: list[dict], position: int | str | None = "last") -> Batch:
    """Render `inputs_list` with the task and resolve `position` per example: an int
    (negative counts back from each example's last real token), "last", or a named task
    position: the last token overlapping that named prompt segment, or with ":first" or
    ":<offset>" another of its tokens."""
    if getattr(task, "input_kind", "tokens") == "vectors":
        if getattr(model, "is_lm", False):
            raise InterventionError(f"task {task.name!r} renders vectors, but {model.name} is a language model that reads "
                                    "token ids; use a model that takes vectors (e.g. 'zoo:hierarchical_equality') or "
                                    "a task that renders prompts")
        x = torch.tensor([task.render(inp) for inp in inputs_list], dtype=model.dtype, device=model.device)
        return Batch(inputs={model.input_name: x}, positions=None, answer_positions=None, texts=list(inputs_list))

    tok = model.tokenizer
    if tok is None:
        raise InterventionError(f"task {task.name!r} renders prompts but {model.name} has no tokenizer; load a model directory that includes one")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    if not getattr(tok, "is_fast", False) and isinstance(position, str) and position != "last":
        raise InterventionError("named positions need a fast tokenizer (offset mappings); load the model's tokenizer.json")
    pieces = [task.segments(inp) for inp in inputs_list]
    texts = ["".join(text for text, _ in segs) for segs in pieces]
    enc = tok(texts, padding=True, return_tensors="pt", return_offsets_mapping=bool(getattr(tok, "is_fast", False)))
    offsets = enc.pop("offset_mapping", None)
    mask = enc["attention_mask"]
    B, T = mask.shape
    lengths = mask.sum(1)
    # Real tokens are contiguous: [start, start + length) whatever the padding side.
    starts = torch.where(mask.bool(), torch.arange(T).expand(B, T), T).min(1).values
    ends = starts + lengths  # one past the last real token
    answer_positions = ends - 1

    if position is None or position == "last":
        positions = answer_positions.clone()
    elif isinstance(position, bool):
        raise InterventionError(f"position {position!r} is a bool; give a token index, 'last' or a task position name")
    elif isinstance(position, int):
        positions = torch.where(torch.tensor(position >= 0), starts + position, ends + position)
        bad = (positions < starts) | (positions >= ends)
        if bad.any():
            i = int(bad.nonzero()[0, 0])
            raise InterventionError(
                f"position {position} is outside example {i} ({int(lengths[i])} tokens: {texts[i]!r}); use an index within every prompt"
            )
    elif isinstance(position, str):
        name, pick = split_position(position)
        positions = torch.empty(B, dtype=torch.long)
        for i, segs in enumerate(pieces):
            span = _segment_span(segs, name)
            if span is None:
                names = sorted({n for _, n in segs if n})
                raise InterventionError(f"task {task.name!r} has no position {name!r}; choose 'last', an int, or one of "
                                        f"{names} (optionally ':first', ':last' or ':<offset>' after the name)")
            s, e = span
            # Drop the segment's leading spaces: " b" -> the token(s) of "b".
            s += len(texts[i][s:e]) - len(texts[i][s:e].lstrip())
            off = offsets[i]
            hit = ((off[:, 0] < e) & (off[:, 1] > s) & (off[:, 1] > off[:, 0]) & mask[i].bool()).nonzero().flatten()
            if len(hit) == 0:
                raise InterventionError(f"no token covers position {name!r} in {texts[i]!r}; check the task's segments")
            # A lone word-start marker (SentencePiece's dummy prefix, a bare BPE space) is not the field.
            words = [h for h in hit.tolist() if tok.convert_ids_to_tokens(int(enc["input_ids"][i, h])).strip("▁Ġ ")]
            hit = torch.tensor(words) if words else hit
            if not -len(hit) <= pick < len(hit):
                raise InterventionError(f"position {position!r}: field {name!r} is {len(hit)} token(s) in "
                                        f"{texts[i]!r}; use an offset in [{-len(hit)}, {len(hit) - 1}]")
            positions[i] = hit[pick]
    else:
        raise InterventionError(f"position must be an int, 'last' or a task position name, not {position!r}")

    inputs = dict(enc)
    if model.is_causal_lm and _forward_takes(model, "position_ids"):
        # Position ids that count real tokens only, so left and right padding give the same answers.
        inputs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
    device = model.device
    return Batch(
        inputs={k: v.to(device) for k, v in inputs.items()},
        positions=positions.to(device),
        answer_positions=answer_positions.to(device),
        texts=texts,
    )


def answer_token_lists(tok, task, texts: dict[Any, str]) -> dict[Any, list[int]]:
    """Each answer's tokens as they follow a prompt of the task: tokenized after a rendered
    prompt and cut off at the prompt's own tokens, so that a SentencePiece word-start marker
    or a BPE leading space is what the model would really predict."""
    import random

    sample = getattr(task, "sample_input", None)  # a duck-typed task may not sample: answers on their own
    context = "".join(text for text, _ in task.segments(sample(random.Random(0)))) if sample else ""
    ctx_ids = tok(context, add_special_tokens=False)["input_ids"] if context else []
    out = {}
    for value, text in texts.items():
        ids = tok(context + text, add_special_tokens=False)["input_ids"]
        if ids[:len(ctx_ids)] == ctx_ids and len(ids) > len(ctx_ids):
            out[value] = ids[len(ctx_ids):]
        else:  # the answer merged with the prompt's end: its tokens on their own
            out[value] = tok(text, add_special_tokens=False)["input_ids"]
    return out


def answer_rule(model, task) -> str:
    """How answers are scored: "single token", or "first token" when some answer is several
    tokens (they must differ at their first token, which is what the model predicts next)."""
    if getattr(task, "input_kind", "tokens") == "vectors":
        return "class index"
    return "first token" if any(len(ids) > 1 for ids in _answer_lists(model, task).values()) else "single token"


def _answer_lists(model, task) -> dict[Any, list[int]]:
    tok = model.tokenizer
    if tok is None:
        raise InterventionError(f"{model.name} has no tokenizer to map task {task.name!r}'s answers to tokens")
    return answer_token_lists(tok, task, task.answers)


def answer_ids(model, task) -> dict[Any, int]:
    """Output value -> token id of its answer (tokens tasks) or class index (vectors). An
    answer of several tokens is scored on its first token (the next-token prediction after
    the prompt); answers that share their first token cannot be told apart that way and are
    refused with the shared token named."""
    if getattr(task, "input_kind", "tokens") == "vectors":
        return {value: int(ans) for value, ans in task.answers.items()}
    tok = model.tokenizer
    lists = _answer_lists(model, task)
    out = {}
    for value, ids in lists.items():
        text = task.answers[value]
        if not ids:
            raise InterventionError(f"answer {text!r} of task {task.name!r} is no tokens for {model.name}'s tokenizer")
        if tok.unk_token_id is not None and ids[0] == tok.unk_token_id:
            raise InterventionError(f"answer {text!r} is unknown to {model.name}'s tokenizer (maps to unk)")
        out[value] = int(ids[0])
    firsts: dict[int, list] = {}
    for value, first in out.items():
        firsts.setdefault(first, []).append(task.answers[value])
    shared = {t: texts for t, texts in firsts.items() if len(texts) > 1}
    if shared:
        t, texts = next(iter(shared.items()))
        raise InterventionError(
            f"answers {texts} of task {task.name!r} all start with the token {tok.convert_ids_to_tokens(t)!r} for "
            f"{model.name}'s tokenizer, so the next token cannot tell them apart; write answers that differ in "
            "their first token (e.g. drop a shared first word)")
    return out
