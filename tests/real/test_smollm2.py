"""SmolLM2-135M-Instruct end to end: loaded from its GGUF file (and from the conversion cache
the second time), the IOI task's named positions on its real tokenizer, its accuracy on IOI,
`dii search` on the .gguf from a fresh folder finding IOI's output position where it lives,
and a twenty-valued variable of a task of our own found with the default k."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def test_the_gguf_is_dequantized_once_then_loaded_from_its_cache(smollm2_gguf, smollm2, monkeypatch):
    from interventions import gguf, load_model

    assert type(smollm2.hf).__name__ == "LlamaForCausalLM" and smollm2.n_layers == 30 and smollm2.hidden_size == 576
    assert smollm2.dtype == torch.float32 and smollm2.name == str(smollm2_gguf)

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("converted again instead of reading the cache")

    monkeypatch.setattr(gguf, "_convert", no_second_conversion)
    again = load_model(str(smollm2_gguf), device="cpu")
    assert again.fingerprint == smollm2.fingerprint
    (cached,) = [p for p in gguf.cache_root().glob("*-float32") if (p / gguf.INFO_FILE).is_file()
                 and json.loads((p / gguf.INFO_FILE).read_text())["file"] == smollm2_gguf.name]
    info = json.loads((cached / gguf.INFO_FILE).read_text())
    assert info["sha256"] == gguf.sha256_file(smollm2_gguf) and info["architecture"] == "llama"
    assert (cached / "model.safetensors").is_file() and not list(cached.parent.glob(f".{cached.name}.tmp-*"))


def test_ioi_positions_fall_on_the_tokens_worked_out_by_hand(smollm2):
    """'When Mary and John went to the store , John gave a drink to' in SmolLM2's byte-level BPE:
    When | ĠMary | Ġand | ĠJohn | Ġwent | Ġto | Ġthe | Ġstore | Ġ, | ĠJohn | Ġgave | Ġa | Ġdrink | Ġto,
    so n1 = 1, n2 = 3, s = 9 and the last token 13; every name is one token."""
    from causal.tasks import get_task
    from interventions import answer_rule, encode

    task = get_task("ioi")
    x = {"n1": "Mary", "n2": "John", "s": "John"}
    ids = smollm2.tokenizer(task.render(x), add_special_tokens=False)["input_ids"]
    assert smollm2.tokenizer.convert_ids_to_tokens(ids) == [
        "When", "ĠMary", "Ġand", "ĠJohn", "Ġwent", "Ġto", "Ġthe", "Ġstore", "Ġ,", "ĠJohn", "Ġgave", "Ġa", "Ġdrink", "Ġto"]
    for position, index in (("n1", 1), ("n2", 3), ("s", 9), ("last", 13)):
        assert encode(smollm2, task, [x], position).positions.tolist() == [index]
    assert answer_rule(smollm2, task) == "single token"


@torch.no_grad()
def test_it_does_ioi(smollm2):
    """Its answer on 64 fresh IOI prompts is the indirect object, nearly always."""
    import random

    from causal.tasks import get_task
    from interventions import answer_ids, encode

    task = get_task("ioi")
    rng = random.Random(0)
    inputs = [task.sample_input(rng) for _ in range(64)]
    batch = encode(smollm2, task, inputs, "last")
    logits = smollm2.forward(batch.inputs).logits[torch.arange(len(inputs)), batch.positions]
    ids = answer_ids(smollm2, task)
    values = list(ids)
    picked = logits[:, torch.tensor([ids[v] for v in values])].argmax(-1).tolist()
    hyp = task.causal_model
    accuracy = sum(values[p] == hyp.run(x)[hyp.output] for p, x in zip(picked, inputs)) / len(inputs)
    assert accuracy >= 0.95, accuracy


def _dii_search(tmp_path: Path, config: str) -> list[dict]:
    """`dii search` as a user runs it, in a fresh folder of its own."""
    (tmp_path / "search.toml").write_text(config)
    proc = subprocess.run([sys.executable, "-m", "experiments.cli", "search", "search.toml"], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "runs").iterdir()
    return json.loads((run / "results.json").read_text())


def test_dii_search_on_the_gguf_finds_ioi_output_position_at_layer_20(smollm2_gguf, tmp_path):
    """The IOI circuit's output position at layer 20, last token, on s1_io_flip pairs (the IO
    name stays, its position flips): DAS is far above the floor and the random rotation."""
    rows = _dii_search(tmp_path, f'model = "{smollm2_gguf}"\ntask = "ioi"\n'
                                 'task_options = {counterfactuals = "s1_io_flip"}\nlayers = [20]\nvariables = ["P"]\n'
                                 'epochs = 2\nn_train = 1000\nn_test = 300\ncontrols = ["random_rotation"]\n')
    das, control = (next(r for r in rows if r["method"] == m) for m in ("das", "random_rotation"))
    assert das["site"] == "L20.block_output.last" and das["k"] == 4  # 'auto': P has two values
    assert das["iia_low"] > das["floor"] + 0.2 and das["iia"] > 0.55, das
    assert control["iia"] < 0.1


def test_a_twenty_valued_variable_is_found_with_the_default_k(smollm2_gguf, tmp_path):
    """A task of our own (tests/real/animals.py): 'The animal is {w} . Again , the animal is'
    -> w, twenty animals. The word's identity is at its own token; k = 'auto' gives it 20
    dimensions (k = 4 read about 0.45 there) and DAS finds it, while the random rotation stays
    near chance."""
    rows = _dii_search(tmp_path, f'model = "{smollm2_gguf}"\n'
                                 f'task = "{HERE / "animals.py"}:build"\nlayers = [2]\npositions = ["w"]\n'
                                 'n_train = 256\nn_test = 200\ncontrols = ["random_rotation"]\n')
    das, control = (next(r for r in rows if r["method"] == m) for m in ("das", "random_rotation"))
    assert das["k"] == 20 and das["iia"] >= 0.9, das
    assert control["iia"] <= 0.15
