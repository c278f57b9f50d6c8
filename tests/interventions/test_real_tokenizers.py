"""Named positions and answers on real tokenizers, trained here from the task's own text (no
download): a byte-level BPE (GPT-2, Qwen, Llama 3 style, with the `tokenizers` library) and a
SentencePiece BPE with split digits (Llama 2 style, with `sentencepiece`). Every expected
token index below was worked out by hand from the printed tokenization in the comments."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from causal import CausalModel
from causal.tasks import template_task
from interventions import InterventionError, answer_ids, answer_rule, encode

TEXTS = ["The price of 1234 apples is 56 dollars . yes please",
         "The price of 78 apples is 9012 dollars . no thanks"] * 100


def price_task(answers):
    model = CausalModel({"X": ["1234", "78"], "Y": ["56", "9012"], "O": [False, True]},
                        {"O": ["X", "Y"]}, {"O": lambda X, Y: len(X) > len(Y)})
    return template_task("prices", model, "The price of {X} apples is {Y} dollars .", answers)


@pytest.fixture(scope="module")
def bpe():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(TEXTS, trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|endoftext|>"],
        show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>")
    return SimpleNamespace(tokenizer=tok, name="bpe", is_causal_lm=False, device="cpu")


@pytest.fixture(scope="module")
def sentencepiece(tmp_path_factory):
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(TEXTS), model_writer=buf, vocab_size=80, model_type="bpe",
                                   character_coverage=1.0, split_digits=True, minloglevel=2,
                                   unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    folder = tmp_path_factory.mktemp("sp")
    (folder / "tokenizer.model").write_bytes(buf.getvalue())
    tok = LlamaTokenizer.from_pretrained(str(folder))
    return SimpleNamespace(tokenizer=tok, name="sentencepiece", is_causal_lm=False, device="cpu")


def tokens(model, batch, i=0):
    return model.tokenizer.convert_ids_to_tokens(batch.inputs["input_ids"][i].tolist())


def test_byte_level_bpe_multi_token_field_and_leading_space(bpe):
    task = price_task({True: " 12 apples", False: " 56 dollars"})
    x = [{"X": "1234", "Y": "56"}]
    batch = encode(bpe, task, x, "X")
    # The Ġ12 | 34 | Ġapples | Ġis | Ġ56 | Ġdollars | Ġ.
    assert tokens(bpe, batch) == ["The", "Ġprice", "Ġof", "Ġ12", "34", "Ġapples", "Ġis", "Ġ56", "Ġdollars", "Ġ."]
    assert batch.positions.tolist() == [4]  # "1234" is Ġ12 + 34: its last token by default
    assert encode(bpe, task, x, "X:first").positions.tolist() == [3]  # Ġ12 carries the leading space
    assert encode(bpe, task, x, "X:0").positions.tolist() == [3]
    assert encode(bpe, task, x, "X:-1").positions.tolist() == [4]
    assert encode(bpe, task, x, "Y").positions.tolist() == [7]  # " 56" is one token, space included
    assert encode(bpe, task, x, "Y:first").positions.tolist() == [7]
    with pytest.raises(InterventionError, match=r"'X:2'.*2 token\(s\).*\[-2, 1\]"):
        encode(bpe, task, x, "X:2")


def test_sentencepiece_split_digits_field_positions(sentencepiece):
    task = price_task({True: " yes please", False: " no thanks"})
    x = [{"X": "1234", "Y": "56"}, {"X": "78", "Y": "9012"}]
    batch = encode(sentencepiece, task, x, "X")
    # ▁The ▁price ▁of ▁ 1 2 3 4 ▁apples ▁is ▁ 5 6 ▁dollars ▁.   (a bare ▁ before each number)
    assert tokens(sentencepiece, batch)[:8] == ["▁The", "▁price", "▁of", "▁", "1", "2", "3", "4"]
    assert batch.positions.tolist() == [7, 5]  # "4" and "8"
    assert encode(sentencepiece, task, x, "X:first").positions.tolist() == [4, 4]  # "1" and "7", not the bare ▁
    assert encode(sentencepiece, task, x, "X:1").positions.tolist() == [5, 5]
    assert encode(sentencepiece, task, x, "Y").positions.tolist() == [12, 12]  # "6" of 56; "2" of 9012 (right-padded)
    y = encode(sentencepiece, task, x, "Y:first")
    assert [tokens(sentencepiece, y, i)[p] for i, p in enumerate(y.positions.tolist())] == ["5", "9"]


def test_multi_token_answers_are_scored_on_their_differing_first_token(bpe, sentencepiece):
    sp_task = price_task({True: " yes please", False: " no thanks"})
    ids = answer_ids(sentencepiece, sp_task)  # ▁yes ▁please / ▁no ▁thanks
    tok = sentencepiece.tokenizer
    assert {v: tok.convert_ids_to_tokens(i) for v, i in ids.items()} == {True: "▁yes", False: "▁no"}
    assert answer_rule(sentencepiece, sp_task) == "first token"
    bpe_task = price_task({True: " 12 apples", False: " 56 dollars"})
    ids = answer_ids(bpe, bpe_task)  # Ġ12 Ġapples / Ġ56 Ġdollars
    assert {v: bpe.tokenizer.convert_ids_to_tokens(i) for v, i in ids.items()} == {True: "Ġ12", False: "Ġ56"}
    assert answer_rule(bpe, bpe_task) == "first token"


def test_answers_sharing_their_first_token_are_refused_naming_it(bpe):
    # Byte-level BPE splits " yes please" as Ġ | yes | ... and " no thanks" as Ġ | no | ...: both start with Ġ.
    task = price_task({True: " yes please", False: " no thanks"})
    with pytest.raises(InterventionError, match=r"start with the token 'Ġ'.*differ in their first token"):
        answer_ids(bpe, task)
