"""LoReFT on SmolLM2-135M-Instruct, as README's "ReFT on a pretrained model" runs it, cut to a
few steps: the held-out accuracy by greedy generation after training beats the base model's on
a fixed subset of the sentiment task's test file (the base model does 0.43 of the whole file)."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.finetune.config import FinetuneConfig
from experiments.finetune.train import finetune

DATA = Path(__file__).resolve().parents[2] / "experiments" / "data"


def _first(path: Path, n: int, out: Path) -> Path:
    lines = path.read_text().splitlines()[:n]
    out.write_text("\n".join(lines) + "\n")
    return out


def test_loreft_a_few_steps_beats_the_base_model_by_generation(smollm2_gguf, tmp_path):
    train = _first(DATA / "reft_sentiment_train.jsonl", 160, tmp_path / "train.jsonl")
    test = _first(DATA / "reft_sentiment_test.jsonl", 48, tmp_path / "test.jsonl")
    config = FinetuneConfig(model=str(smollm2_gguf), data=str(train), eval_data=str(test), method="loreft",
                            layers=[8, 16], positions="l1", rank=4, lr=2e-2, steps=24, batch_size=8, seed=0)
    r = finetune(config)
    labels = [json.loads(line)["response"] for line in test.read_text().splitlines()]
    assert set(labels) == {" positive", " negative"} and len(labels) == 48
    assert r.trainable_params == 2 * (2 * 4 * 576 + 4)  # R and W (4 x 576) and b (4) at two layers
    assert r.base_generation_accuracy is not None and r.generation_accuracy is not None
    # The base model answers many of them with a label word, but not by the review's sense.
    assert r.generation_accuracy >= r.base_generation_accuracy + 0.2, (r.base_generation_accuracy,
                                                                        r.generation_accuracy)
