"""Evaluation by generation: for every finetuning method, greedy decoding on a left-padded batch
with the method's edits (ReFT on the prompt only, peft's adapters, prefixes and prompts) gives
the very tokens that the method's own teacher-forced forward ranks first. A generate that
dropped a prefix, an adapter or an intervention would disagree with its forward here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from experiments.finetune import METHODS, FinetuneConfig, jsonl_examples, words_of
from experiments.finetune.data import Encoded, encode_examples
from experiments.finetune.generation import generation_accuracy, hf_generate
from experiments.finetune.methods import build_method
from experiments.finetune.train import load_for_finetune

ROOT = Path(__file__).resolve().parents[2]
DATA = str(ROOT / "experiments" / "data" / "instructions_tiny.jsonl")
NEW_TOKENS = 3
TRAIN_STEPS = 15


def _method(name: str):
    config = FinetuneConfig(model="config:gpt2-tiny", data=DATA, method=name, layers=[0, 1], rank=2, positions="f1+l1")
    train, held_out = jsonl_examples(config)
    model = load_for_finetune(config, "cpu", words_of(train + held_out))
    prompts = [ex.prompt for ex in held_out[:6]]
    base = hf_generate(model, model.hf, prompts, NEW_TOKENS)  # before peft wraps the model in place
    method = build_method(model, config, {})
    # a few steps toward the training responses, so that the edits change the answers
    data = encode_examples(model.tokenizer, train, config.max_length, add_eos=False)
    optimizer = torch.optim.Adam(method.params, lr=1e-3 if name == "full" else 0.2)
    method.train()
    for _ in range(TRAIN_STEPS):
        loss, _, count = method.loss_terms(data)
        (loss / count.sum()).backward()
        optimizer.step()
        optimizer.zero_grad()
    method.eval()
    return model, method, prompts, base


def _teacher_forced_argmax(method, model, prompts: list[str], generated: torch.Tensor) -> torch.Tensor:
    """The method's own top token at each generated position, the prompt and the generated
    tokens fed in right-padded (as training and evaluation feed them)."""
    tok = model.tokenizer
    rows = [tok(p, add_special_tokens=False)["input_ids"] + g for p, g in zip(prompts, generated.tolist())]
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
    lengths = torch.tensor([len(r) - NEW_TOKENS for r in rows])
    with torch.no_grad():
        logits = method.logits(Encoded(ids, mask, torch.full_like(ids, -100), lengths))
    return torch.stack([logits[i, n - 1:n - 1 + NEW_TOKENS].argmax(-1) for i, n in enumerate(lengths.tolist())])


@pytest.mark.parametrize("name", list(METHODS))
def test_generation_gives_the_tokens_the_methods_forward_ranks_first(name):
    model, method, prompts, base = _method(name)
    assert len({len(model.tokenizer(p)["input_ids"]) for p in prompts}) > 1  # left padding is exercised
    generated = method.generate(prompts, NEW_TOKENS)
    assert generated.shape == (len(prompts), NEW_TOKENS)  # nothing taught an end-of-sequence token
    assert torch.equal(_teacher_forced_argmax(method, model, prompts, generated), generated)
    if name != "prompt_tuning":  # the edits are on: the base model answers otherwise
        assert not torch.equal(base, generated)
    # (four virtual tokens do not move this random model's top token in a few steps; its
    # drift under a cache, fixed by generating without one, showed in the equality above)


def test_generation_accuracy_counts_exact_responses():
    class Example:
        def __init__(self, prompt, response):
            self.prompt, self.response = prompt, response

    class Tok:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(c) for c in text]}

    def generate(prompts, n):  # answers "ab..." to every prompt
        return torch.tensor([[ord("a"), ord("b"), ord("c")][:n]] * len(prompts))

    examples = [Example("p", "ab"), Example("q", "abc"), Example("r", "b"), Example("s", "a")]
    assert generation_accuracy(generate, Tok(), examples, batch_size=3) == pytest.approx(3 / 4)
