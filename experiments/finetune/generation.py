"""Evaluation by generation, as the ReFT paper judges its finetunes: greedy decoding on the
held-out prompts, the interventions on the prompt only (batched, left-padded), and a response
counted right when the first tokens generated are exactly its tokens."""

from __future__ import annotations

import torch

from interventions.reft_artifact import encode_prompts, pad_token_id

GENERATION_BATCH = 32


@torch.no_grad()
def generation_accuracy(generate, tokenizer, examples, batch_size: int = GENERATION_BATCH) -> float:
    """Share of `examples` whose response `generate(prompts, max_new_tokens) -> token id rows`
    reproduces exactly (its tokens, without the end-of-sequence token training may add)."""
    right = 0
    for i in range(0, len(examples), batch_size):
        chunk = examples[i:i + batch_size]
        want = [tokenizer(ex.response, add_special_tokens=False)["input_ids"] for ex in chunk]
        got = generate([ex.prompt for ex in chunk], max(len(w) for w in want))
        right += sum(list(row[:len(w)]) == w for row, w in zip(got.tolist(), want))
    return right / max(1, len(examples))


def hf_generate(model, hf_module, prompts: list[str], max_new_tokens: int, context=None,
                **generate_kwargs) -> torch.Tensor:
    """The new token ids of a greedy, left-padded batch through `hf_module` (the model, a peft
    wrapper), inside `context(lengths, offsets)` when given (ReFT attaches there)."""
    batch, lengths, offsets = encode_prompts(model, prompts, padding_side="left")
    kwargs = {"max_new_tokens": max_new_tokens, "do_sample": False, "pad_token_id": pad_token_id(model.tokenizer),
              **generate_kwargs}
    if context is None:
        out = hf_module.generate(**batch, **kwargs)
    else:
        with context(lengths, offsets):
            out = hf_module.generate(**batch, **kwargs)
    return out[:, batch["input_ids"].shape[1]:].cpu()
