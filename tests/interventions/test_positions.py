"""Tokenizing task prompts and resolving the intervened token per example."""

from __future__ import annotations

import pytest
import torch

from interventions import InterventionError, encode, load_model
from interventions.positions import answer_ids


def _word_at(model, batch, i, pos):
    return model.tokenizer.convert_ids_to_tokens(int(batch.inputs["input_ids"][i, pos]))


@pytest.mark.parametrize("side", ["right", "left"])
def test_named_positions_resolve_to_the_named_word(tiny, side):
    model = tiny.make_lm("gpt2", padding_side=side)
    inputs = tiny.prompt_inputs(8, seed=1)
    for name in ("adj", "noun"):
        batch = encode(model, tiny.PromptTask(), inputs, name)
        for i, inp in enumerate(inputs):
            assert _word_at(model, batch, i, batch.positions[i]) == inp[name]
    # Filler of different lengths: examples intervene at different indices (right padding).
    assert (len(set(batch.positions.tolist())) > 1) == (side == "right")


@pytest.mark.parametrize("side", ["right", "left"])
def test_last_and_integer_positions_count_real_tokens(tiny, side):
    model = tiny.make_lm("llama", padding_side=side)
    inputs = tiny.prompt_inputs(8, seed=2)
    last = encode(model, tiny.PromptTask(), inputs, "last")
    assert torch.equal(last.positions, last.answer_positions)
    mask = last.inputs["attention_mask"]
    assert (mask[torch.arange(len(last)), last.answer_positions] == 1).all()
    for i in range(len(inputs)):
        assert _word_at(model, last, i, last.answer_positions[i]) == "?"
    minus2 = encode(model, tiny.PromptTask(), inputs, -2)
    first = encode(model, tiny.PromptTask(), inputs, 0)
    for i, inp in enumerate(inputs):
        assert _word_at(model, minus2, i, minus2.positions[i]) == "sat"
        assert _word_at(model, first, i, first.positions[i]) == ("very" if inp["n_filler"] else "the")
    if side == "left":
        assert (last.answer_positions == mask.shape[1] - 1).all()


def test_position_outside_a_prompt_is_refused(tiny):
    model = tiny.make_lm("gpt2")
    with pytest.raises(InterventionError, match="outside"):
        encode(model, tiny.PromptTask(), tiny.prompt_inputs(4), -40)
    with pytest.raises(InterventionError, match="adj"):
        encode(model, tiny.PromptTask(), tiny.prompt_inputs(4), "colour")


def test_left_and_right_padding_give_the_same_answers(tiny):
    inputs = tiny.prompt_inputs(8, seed=3)
    logits = []
    for side in ("right", "left"):
        model = tiny.make_lm("llama", padding_side=side)
        batch = encode(model, tiny.PromptTask(), inputs, "noun")
        out = model.forward(batch.inputs).logits
        logits.append(out[torch.arange(len(batch)), batch.answer_positions])
    torch.testing.assert_close(logits[0], logits[1], atol=1e-5, rtol=1e-5)


def test_batch_select_keeps_rows_together(tiny):
    model = tiny.make_lm("gpt2")
    batch = encode(model, tiny.PromptTask(), tiny.prompt_inputs(6), "adj")
    sub = batch.select([4, 1])
    assert len(sub) == 2 and len(batch) == 6
    assert torch.equal(sub.inputs["input_ids"], batch.inputs["input_ids"][[4, 1]])
    assert sub.positions.tolist() == [batch.positions[4].item(), batch.positions[1].item()]
    assert sub.texts == [batch.texts[4], batch.texts[1]]
    assert len(batch.select(slice(0, 3))) == 3


def test_vector_task_batches_inputs_without_positions(tiny):
    model = load_model(tiny.make_mlp_module(), device="cpu")
    inputs = tiny.vector_inputs(5)
    batch = encode(model, tiny.VectorTask(), inputs, None)
    assert batch.positions is None and batch.answer_positions is None
    x = batch.inputs[model.input_name]
    assert x.shape == (5, 16) and x.dtype == torch.float32
    torch.testing.assert_close(x[2], torch.tensor(inputs[2]["x"]))
    assert answer_ids(model, tiny.VectorTask()) == {False: 0, True: 1}


def test_answer_ids_are_the_first_tokens_and_must_differ_there(tiny):
    model = tiny.make_lm("gpt2")
    ids = answer_ids(model, tiny.PromptTask())
    assert ids == {True: model.tokenizer.convert_tokens_to_ids("true"), False: model.tokenizer.convert_tokens_to_ids("false")}
    task = tiny.PromptTask()
    task.answers = {True: " very true", False: " false"}  # two tokens and one: scored on "very" and "false"
    assert answer_ids(model, task) == {True: model.tokenizer.convert_tokens_to_ids("very"),
                                       False: model.tokenizer.convert_tokens_to_ids("false")}
    task.answers = {True: " very true", False: " very false"}
    with pytest.raises(InterventionError, match="start with the token 'very'"):
        answer_ids(model, task)
