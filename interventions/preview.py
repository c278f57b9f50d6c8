"""What a tokenizer makes of a task's prompt: its tokens, the token each named position
resolves to (by the same `encode` the search uses), and the token each answer is scored on."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from interventions.errors import InterventionError
from interventions.positions import answer_ids, answer_token_lists, encode


def readable(tokenizer, token_id: int) -> str:
    """A token as the text it stands for, its spaces shown as '␣' (not a byte-level BPE's 'Ġ' or
    SentencePiece's '▁')."""
    return tokenizer.decode([token_id]).replace(" ", "␣") or tokenizer.convert_ids_to_tokens(token_id)


def tokenization_preview(tokenizer, task, inputs: dict) -> tuple[str, list[dict], dict[Any, str]]:
    """(prompt, one row per token with the positions that resolve to it, answer -> how it is scored)."""
    reader = SimpleNamespace(tokenizer=tokenizer, name="this tokenizer", is_causal_lm=False, device="cpu")
    batch = encode(reader, task, [inputs], "last")
    ids = batch.inputs["input_ids"][0].tolist()
    mask = batch.inputs["attention_mask"][0].tolist()
    names: dict[int, list[str]] = {int(batch.positions[0]): ["last"]}
    for field in task.position_names:
        for pick in ("", ":first"):
            at = int(encode(reader, task, [inputs], field + pick).positions[0])
            label = field if not pick else f"{field}:first"
            if label.endswith(":first") and at in names and field in names[at]:
                continue  # a one-token field: first is last
            names.setdefault(at, []).append(label)
    rows = [{"index": i, "text": readable(tokenizer, t), "token": tokenizer.convert_ids_to_tokens(t), "id": t,
             "named position": ", ".join(names.get(i, []))} for i, (t, m) in enumerate(zip(ids, mask)) if m]
    answers: dict[Any, str] = {}
    lists = answer_token_lists(tokenizer, task, task.answers)
    try:
        first = answer_ids(reader, task)
    except InterventionError as e:
        first = None
        answers["problem"] = str(e)
    for value, toks in lists.items():
        pieces = [readable(tokenizer, t) for t in toks]
        how = f"{pieces}" + (f", scored on {readable(tokenizer, first[value])!r}" if first else "")
        answers[value] = f"{task.answers[value]!r} = {how}"
    return task.render(inputs), rows, answers
