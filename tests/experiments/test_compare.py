"""ReFT vs PEFT comparison: every method in the table, each method's parameter count equal
to its own count (peft's get_nb_trainable_parameters, 2dr + r per intervention), the run
store files, and the config rules that keep the comparison fair."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from causal.errors import WorkbenchError
from experiments.finetune.compare import CompareConfig, compare, load_compare_config
from experiments.finetune import METHODS

ROOT = Path(__file__).resolve().parents[2]
DATA = str(ROOT / "experiments" / "data" / "instructions_tiny.jsonl")
SHARED = dict(model="config:gpt2-tiny", data=DATA, steps=2, batch_size=8, layers=[1], rank=2, positions="l1")


def _shared(**kw):
    return {**SHARED, **kw}


def _independent_count(method: str) -> int:
    """Each method's own count, computed here without experiments.finetune."""
    import transformers
    from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, TaskType, get_peft_model

    from experiments.finetune import FinetuneConfig, jsonl_examples, words_of
    from experiments.models import config_model_dir

    d, r = 64, 2
    if method in ("loreft", "direft"):
        return 1 * (2 * d * r + r)  # one layer, tied positions
    train, ev = jsonl_examples(FinetuneConfig(**_shared(method="lora")))
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(config_model_dir("gpt2-tiny", words_of(train + ev), 0)))
    if method == "full":
        return sum(p.numel() for p in hf.parameters())
    cfg = {"lora": LoraConfig(task_type=TaskType.CAUSAL_LM, r=4, lora_alpha=8, target_modules=["c_attn"],
                              fan_in_fan_out=True),
           "prefix_tuning": PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4),
           "prompt_tuning": PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4)}[method]
    return get_peft_model(hf, cfg).get_nb_trainable_parameters()[0]


def test_compare_every_method_counts_and_files(tmp_path):
    cfg = CompareConfig(finetune=_shared(), methods=list(METHODS), seeds=[0], overrides={"full": {"lr": 1e-3}},
                        name="tiny-compare")
    res = compare(cfg, runs_dir=tmp_path)
    assert [r["method"] for r in res.summary] == list(METHODS)
    for row in res.rows:
        assert row["trainable_params"] == row["own_count"] == _independent_count(row["method"]), row["method"]
        assert 0 < row["trainable_percent"] <= 100
        assert row["tokens_per_second"] > 0 and row["wall_seconds"] > 0 and row["eval_loss"] > 0
        assert 0 <= row["generation_accuracy"] <= 1
    # every method starts from the same model and is judged on the same held-out prompts
    assert len({r["base_generation_accuracy"] for r in res.rows}) == 1
    full = next(r for r in res.rows if r["method"] == "full")
    assert full["trainable_percent"] == pytest.approx(100.0)
    run = tmp_path / "tiny-compare"
    on_disk = json.loads((run / "compare.json").read_text())
    assert len(on_disk["rows"]) == len(METHODS)
    with open(run / "compare.csv") as f:
        assert [r["method"] for r in csv.DictReader(f)] == list(METHODS)
    curves = json.loads((run / "curves.json").read_text())
    assert set(curves) == set(METHODS) and all(len(c["0"]["loss"]) == 2 for c in curves.values())
    assert json.loads((run / "manifest.json").read_text())["status"] == "finished"


def test_seeds_give_one_row_each_and_a_spread(tmp_path):
    cfg = CompareConfig(finetune=_shared(), methods=["loreft"], seeds=[0, 1, 2], name="seeds")
    res = compare(cfg, runs_dir=tmp_path)
    assert [r["seed"] for r in res.rows] == [0, 1, 2]
    (s,) = res.summary
    assert s["generation_each"].split() == [f"{r['generation_accuracy']:.3f}" for r in res.rows]
    assert s["n_seeds"] == 3
    losses = [r["eval_loss"] for r in res.rows]
    assert s["eval_loss_mean"] == pytest.approx(sum(losses) / 3)


@pytest.mark.parametrize("kw, word", [
    (dict(methods=["loreft", "adapters"]), "adapters"),
    (dict(methods=["lora"], overrides={"lora": {"steps": 10}}), "budget"),
    (dict(methods=["lora"], overrides={"loreft": {"lr": 1e-3}}), "not compared"),
    (dict(seeds=[]), "seeds"),
])
def test_unfair_or_bad_configs_are_refused(kw, word):
    with pytest.raises(WorkbenchError, match=word):
        CompareConfig(finetune=_shared(), **kw)


def test_shipped_compare_configs_load():
    for name in ("compare_price_tagging.toml", "compare_instructions_tiny.toml"):
        cfg = load_compare_config(ROOT / "experiments" / "configs" / name)
        assert set(cfg.methods) == set(METHODS)
    assert load_compare_config(ROOT / "experiments" / "configs" / "compare_price_tagging.toml").seeds == [0, 1, 2]
