"""The ReFT artifact: positions, save/load/generate round trip, provenance checks, and the
pyreft export's tensors against pyreft's formula computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from causal.errors import WorkbenchError
from experiments.models import config_model_dir
from experiments.export.pyreft import export_pyreft, pyreft_order, pyreft_unit_locations
from interventions.reft_artifact import (
    PositionSpec,
    ReftInterventions,
    encode_prompts,
    generate,
    load_reft,
)
from interventions.loading import load_model

DATA = Path(__file__).resolve().parents[2] / "experiments" / "data" / "instructions_tiny.jsonl"
PROMPTS = ["instruction : what colour is the sky ? response :", "instruction : add one and one . response :",
           "instruction : say hello politely . response :"]


@pytest.fixture(scope="module")
def tiny():
    words = [w for line in DATA.read_text().splitlines() for v in json.loads(line).values() for w in v.split()]
    return load_model(str(config_model_dir("gpt2-tiny", words, seed=0)), device="cpu")


def _perturbed(model, share_weights=True, positions="f1+l2", method="loreft") -> ReftInterventions:
    torch.manual_seed(0)
    reft = ReftInterventions(method, model.hidden_size, 4, [0, 1], positions, share_weights,
                             provenance={"model_name": model.name, "model_fingerprint": model.fingerprint})
    with torch.no_grad():  # move W and b away from anything special so outputs change
        for m in reft.units.values():
            m.learned_source.weight.normal_(0, 0.5)
            m.learned_source.bias.normal_(0, 0.5)
    return reft.eval()


def test_positions_first_and_last_with_left_padding():
    spec = PositionSpec.parse("f1+l2")
    lengths, offsets = torch.tensor([5, 3]), torch.tensor([0, 2])
    assert spec.group_positions("f", lengths, offsets).tolist() == [[0], [2]]
    assert spec.group_positions("l", lengths, offsets).tolist() == [[3, 4], [3, 4]]
    # a prompt shorter than n repeats its edge token instead of leaving the prompt
    assert PositionSpec.parse("l3").group_positions("l", torch.tensor([2]), torch.tensor([0])).tolist() == [[0, 0, 1]]
    assert PositionSpec.parse("f3").group_positions("f", torch.tensor([2]), torch.tensor([0])).tolist() == [[0, 1, 1]]


@pytest.mark.parametrize("bad", ["", "x1", "f0", "l0+f1", "f1+", 3])
def test_bad_positions_name_the_format(bad):
    with pytest.raises(WorkbenchError, match="positions .* (not understood|selects no token)"):
        PositionSpec.parse(bad)


@pytest.mark.parametrize("share_weights, n_units", [(True, 2), (False, 4)])
def test_units_and_parameter_formula(tiny, share_weights, n_units):
    reft = _perturbed(tiny, share_weights)
    d, r = tiny.hidden_size, 4
    assert len(reft.units) == n_units
    assert reft.trainable_count() == n_units * (2 * d * r + r) == reft.formula_count()


def test_save_load_generate_same_outputs(tiny, tmp_path):
    reft = _perturbed(tiny, share_weights=False)
    batch, lengths, offsets = encode_prompts(tiny, PROMPTS, padding_side="left")
    with torch.no_grad(), reft.attached(tiny, lengths, offsets):
        before_logits = tiny.hf(**batch).logits
    before = generate(tiny, reft, PROMPTS, max_new_tokens=6)
    plain = generate(tiny, None, PROMPTS, max_new_tokens=6)
    with torch.no_grad():
        assert (tiny.hf(**batch).logits - before_logits).abs().max() > 1e-3  # the intervention does something

    reft.save(tmp_path / "reft")
    assert sorted(p.name for p in (tmp_path / "reft").iterdir()) == ["config.json", "interventions.safetensors"]
    loaded = load_reft(tmp_path / "reft", model=tiny)
    with torch.no_grad(), loaded.attached(tiny, lengths, offsets):
        after_logits = tiny.hf(**batch).logits
    assert torch.allclose(after_logits, before_logits, atol=1e-6)
    assert generate(tiny, loaded, PROMPTS, max_new_tokens=6) == before
    assert len(before) == len(PROMPTS) and before != plain


def test_generate_edits_the_prompt_only(tiny):
    """Greedy generate with the interventions equals a manual greedy loop that re-runs the
    whole sequence with the interventions at the prompt positions."""
    reft = _perturbed(tiny)
    prompt = PROMPTS[0]
    batch, lengths, offsets = encode_prompts(tiny, [prompt])
    ids = batch["input_ids"]
    with torch.no_grad():
        for _ in range(4):
            with reft.attached(tiny, lengths, offsets):
                nxt = tiny.hf(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], 1)
    manual = tiny.tokenizer.decode(ids[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert generate(tiny, reft, [prompt], max_new_tokens=4) == [manual]


def test_artifact_from_another_model_is_refused(tiny, tmp_path):
    reft = _perturbed(tiny)
    reft.provenance["model_fingerprint"] = "0" * 64
    reft.save(tmp_path / "other")
    with pytest.raises(WorkbenchError, match="load it onto the model it was trained on"):
        load_reft(tmp_path / "other", model=tiny)


def test_corrupt_artifact_is_one_clear_error(tiny, tmp_path):
    _perturbed(tiny).save(tmp_path / "a")
    (tmp_path / "a" / "interventions.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(WorkbenchError, match="corrupt"):
        load_reft(tmp_path / "a", model=tiny)
    with pytest.raises(WorkbenchError, match="not found"):
        load_reft(tmp_path / "missing")


@pytest.mark.parametrize("share_weights", [True, False])
def test_pyreft_export_tensors_reproduce_our_forward(tiny, tmp_path, share_weights):
    """pyreft's LoReFT: h + (W h + b - h R_p) R_p^T with R_p = rotate_layer [d, r]; computed
    here by hand from the exported files and compared with ours."""
    reft = _perturbed(tiny, share_weights)
    out = export_pyreft(reft, tmp_path / "pyreft")
    config = json.loads((out / "config.json").read_text())
    keys = config["sorted_keys"]
    assert len(keys) == len(reft.units) and config["intervention_dimensions"] == [tiny.hidden_size] * len(keys)
    assert all(t == "<class 'pyreft.interventions.LoreftIntervention'>" for t in config["intervention_types"])
    h = torch.randn(7, tiny.hidden_size)
    for ours, key in pyreft_order(reft):
        sd = torch.load(out / f"intkey_{key}.bin", weights_only=True)
        rp = sd["rotate_layer"]
        assert rp.shape == (tiny.hidden_size, 4)
        assert torch.allclose(rp.T @ rp, torch.eye(4), atol=1e-5)
        theirs = h + (h @ sd["weight"].T + sd["bias"] - h @ rp) @ rp.T
        with torch.no_grad():
            assert torch.allclose(reft.units[ours](h), theirs, atol=1e-5)
    locs = pyreft_unit_locations(reft, torch.tensor([6, 4]))
    assert len(locs) == len(keys) and all(len(per_example) == 2 for per_example in locs)
    if not share_weights:  # pyreft's order: every layer's first-n, then every layer's last-n
        assert locs[0] == [[0], [0]] and locs[-1] == [[4, 5], [2, 3]]


def test_direft_does_not_export(tiny, tmp_path):
    with pytest.raises(WorkbenchError, match="only LoReFT"):
        export_pyreft(_perturbed(tiny, method="direft"), tmp_path / "x")


@pytest.mark.parametrize("share_weights", [True, False])
def test_a_pyreft_directory_imports_and_round_trips(tiny, tmp_path, share_weights):
    """export_pyreft -> import_pyreft gives back the same interventions: the same logits to 1e-5
    on prompts of several lengths, and an artifact of ours that saves and loads."""
    from experiments.export.pyreft import import_pyreft
    from interventions.reft_artifact import encode_prompts

    reft = _perturbed(tiny, share_weights)
    imported = import_pyreft(export_pyreft(reft, tmp_path / "pyreft"), tiny, positions="f1+l2")
    assert sorted(imported.units) == sorted(reft.units) and imported.share_weights == share_weights
    prompts = ["the cat sat", "a dog ran to the park", "hello"]
    batch, lengths, _ = encode_prompts(tiny, prompts, padding_side="right")
    with torch.no_grad():
        with reft.attached(tiny, lengths):
            ours = tiny.hf(**batch).logits
        with imported.attached(tiny, lengths):
            theirs = tiny.hf(**batch).logits
        plain = tiny.hf(**batch).logits
    assert (ours - plain).abs().max() > 1e-2  # the interventions do something
    assert torch.allclose(ours, theirs, atol=1e-5)
    imported.save(tmp_path / "ours")
    assert load_reft(tmp_path / "ours", model=tiny).provenance["imported_from"].startswith("pyreft checkpoint")


class NotATensor:
    pass


def test_a_pyreft_directory_that_is_not_plain_tensors_is_refused(tiny, tmp_path):
    from experiments.export.pyreft import import_pyreft

    out = export_pyreft(_perturbed(tiny), tmp_path / "pyreft")
    key = json.loads((out / "config.json").read_text())["sorted_keys"][0]
    good = torch.load(out / f"intkey_{key}.bin", weights_only=True)
    torch.save({**good, "extra": NotATensor()}, out / f"intkey_{key}.bin")  # would need a full unpickle
    with pytest.raises(WorkbenchError, match="refused rather than unpickled"):
        import_pyreft(out, tiny, positions="f1+l2")
    torch.save({**good, "weight": good["weight"].long()}, out / f"intkey_{key}.bin")
    with pytest.raises(WorkbenchError, match="not pyreft's LoReFT state"):
        import_pyreft(out, tiny, positions="f1+l2")
    torch.save(good, out / f"intkey_{key}.bin")
    with pytest.raises(WorkbenchError, match="which positions 'f1' does not describe|positions"):
        import_pyreft(export_pyreft(_perturbed(tiny, share_weights=False), tmp_path / "untied"), tiny, positions="f1")
    (out / "config.json").write_text("[1, 2]")
    with pytest.raises(WorkbenchError, match="sorted_keys"):
        import_pyreft(out, tiny, positions="f1+l2")


def test_batched_generation_with_left_padding_equals_one_prompt_at_a_time(tmp_path):
    """LoReFT at 3 layers, untied first/last positions, prompts of different lengths: the
    batch (left padded) gives every prompt the tokens it gets alone (pyreft issues #105,
    #172, #173 report this failing there)."""
    from interventions.reft_artifact import generate

    words = [w for line in DATA.read_text().splitlines() for v in json.loads(line).values() for w in v.split()]
    model = load_model(str(config_model_dir("gpt2-small-shape", words, seed=0)), device="cpu")
    torch.manual_seed(0)
    reft = ReftInterventions("loreft", model.hidden_size, 4, [1, 4, 8], "f1+l2", False,
                             provenance={"model_name": model.name, "model_fingerprint": model.fingerprint})
    with torch.no_grad():
        for m in reft.units.values():
            m.learned_source.weight.normal_(0, 0.5)
            m.learned_source.bias.normal_(0, 0.5)
    reft.eval()
    prompts = ["the", "write a short story about", "what is the capital of", "one two"]
    batched = generate(model, reft, prompts, max_new_tokens=6)
    alone = [generate(model, reft, [p], max_new_tokens=6)[0] for p in prompts]
    assert batched == alone
    assert batched != generate(model, None, prompts, max_new_tokens=6)  # the interventions change the text
