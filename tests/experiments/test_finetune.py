"""LoReFT finetuning: parameter counts against the formula, learning a changed rule on a zoo
model, loss on a JSONL instruction set, initialisation from a Subspace, exact gradient
accumulation, and 2-process DDP (gloo) agreeing with one process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from causal.errors import WorkbenchError
from experiments.finetune import FinetuneConfig, finetune, load_finetune_config, task_variant
from interventions.io import load_safetensors

ROOT = Path(__file__).resolve().parents[2]
DATA = str(ROOT / "experiments" / "data" / "instructions_tiny.jsonl")


def tiny(**kw) -> FinetuneConfig:
    base = dict(model="config:gpt2-tiny", data=DATA, method="loreft", positions="f1+l1", rank=4, steps=3,
                batch_size=8, lr=2e-2)
    return FinetuneConfig(**{**base, **kw})


def weights(result) -> dict[str, torch.Tensor]:
    return load_safetensors(Path(result.artifact_path) / "interventions.safetensors", "test")


@pytest.mark.parametrize("method, share_weights, n_interventions", [
    ("loreft", True, 2), ("loreft", False, 4), ("direft", True, 2), ("direft", False, 4)])
def test_printed_trainable_count_equals_formula(capsys, method, share_weights, n_interventions):
    r = finetune(tiny(method=method, share_weights=share_weights, steps=1))
    d, rank = 64, 4  # gpt2-tiny: 2 layers of width 64
    expected = n_interventions * (2 * d * rank + rank)
    printed = re.search(r"trainable parameters: ([\d,]+) = .* = ([\d,]+)", capsys.readouterr().out)
    assert printed is not None
    assert int(printed.group(1).replace(",", "")) == expected == int(printed.group(2).replace(",", ""))
    assert r.trainable_params == r.own_count == expected


def test_loss_falls_on_jsonl_instructions():
    r = finetune(tiny(positions="f3+l3", rank=8, steps=80, lr=2e-2, eval_every=40))
    first, last = sum(r.loss_curve[:5]) / 5, sum(r.loss_curve[-5:]) / 5
    assert last < first - 0.05
    assert r.eval_curve[0]["step"] == 0 and r.eval_curve[-1]["loss"] < r.eval_curve[0]["loss"] - 0.05


def test_gradient_accumulation_is_exact(tmp_path):
    """batch 8 in one piece and batch 4 x 2 accumulated make the same updates."""
    a = finetune(tiny(batch_size=8, grad_accum=1), out_dir=tmp_path / "a")
    b = finetune(tiny(batch_size=4, grad_accum=2), out_dir=tmp_path / "b")
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-5), k
    assert a.loss_curve == pytest.approx(b.loss_curve, abs=1e-5)


@pytest.mark.parametrize("rank, freeze", [(3, True), (1, False)])
def test_init_from_subspace(tmp_path, rank, freeze):
    from experiments.finetune import jsonl_examples, words_of
    from experiments.models import config_model_dir
    from interventions.reft_artifact import load_reft
    from interventions.artifact import Subspace
    from interventions.loading import load_model
    from interventions.subspace import random_orthonormal_rows

    train, ev = jsonl_examples(tiny())
    model = load_model(str(config_model_dir("gpt2-tiny", words_of(train + ev), 0)), device="cpu")
    rotation = random_orthonormal_rows(2, model.hidden_size, torch.Generator().manual_seed(5))
    Subspace(rotation=rotation, model_name=model.name, model_fingerprint=model.fingerprint, site="L1.block_output.last",
             variables=["V"]).save(tmp_path / "sub")
    r = finetune(tiny(layers=[1], positions="l1", rank=rank, init_from=str(tmp_path / "sub"), freeze_rotation=freeze),
                 out_dir=tmp_path / "ft")
    d = model.hidden_size
    assert r.trainable_params == (d * rank + rank if freeze else 2 * d * rank + rank)
    reft = load_reft(r.artifact_path, model=model)
    R = next(iter(reft.units.values())).rotation.detach()
    assert torch.allclose(R @ R.T, torch.eye(rank), atol=1e-5)
    kept = min(rank, 2)
    if freeze:  # frozen: the subspace's directions survive training exactly, completed orthogonally
        assert torch.allclose(R[:kept], rotation[:kept], atol=1e-5)
        assert reft.provenance["init_from"]["k"] == 2 and reft.provenance["init_from"]["frozen"]
    else:  # rank 1 < k = 2 starts from the first direction and then trains it
        assert torch.nn.functional.cosine_similarity(R[0], rotation[0], dim=0) > 0.9


@pytest.mark.parametrize("fields, word", [
    (dict(method="adapter"), "method"),
    (dict(positions="middle"), "positions"),
    (dict(lr_schedule="step"), "lr_schedule"),
    (dict(task="price_tagging"), "task"),  # both task and data
    pytest.param(dict(bf16=True), "bf16", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CPU only")),
    (dict(method="lora", init_from="x"), "init_from"),
])
def test_config_errors_name_the_field(fields, word):
    with pytest.raises(WorkbenchError, match=word):
        finetune(tiny(**fields))


def test_variant_errors_name_allowed_values():
    with pytest.raises(WorkbenchError, match="lower_shift"):
        FinetuneConfig(model="zoo:price_tagging", task="price_tagging", variant={"shift": 2})
    with pytest.raises(WorkbenchError, match="no variant"):
        FinetuneConfig(model="zoo:x", task="arithmetic_carry", variant={"lower_shift": 2})


def test_price_tagging_variants_change_the_rule():
    from causal.tasks import get_task

    m = task_variant(get_task("price_tagging"), {"lower_shift": 2}).causal_model
    assert m.run({"X": 5, "L": 4, "U": 9})["O"] is False  # 5 >= 4 but not >= 6
    assert m.run({"X": 6, "L": 4, "U": 9})["O"] is True
    assert get_task("price_tagging").causal_model.run({"X": 5, "L": 4, "U": 9})["O"] is True
    m = task_variant(get_task("price_tagging"), {"ignore_lower": 1}).causal_model
    assert m.run({"X": 2, "L": 4, "U": 9})["O"] is True and m.run({"X": 12, "L": 4, "U": 9})["O"] is False


def test_hierarchical_equality_variants_read_one_pair_or_negate():
    """The app's default changed rule: the answer reads the left pair alone (V1), which changes
    about half of the answers the task's main rule gives."""
    from causal.tasks import get_task

    task = get_task("hierarchical_equality_tokens")
    x = {"a": "o1", "b": "o1", "c": "o2", "d": "o3"}  # left pair equal, right pair not
    assert task.causal_model.run(x)["O"] is False  # main rule: V1 == V2
    assert task_variant(task, {"left_only": 1}).causal_model.run(x)["O"] is True
    assert task_variant(task, {"right_only": 1}).causal_model.run(x)["O"] is False
    assert task_variant(task, {"left_only": 1, "negate": 1}).causal_model.run(x)["O"] is False
    assert task_variant(task, {"negate": 1}).causal_model.run(x)["O"] is True
    changed = task_variant(task, {"left_only": 1})
    data = changed.factual_data(400, seed=0)
    share = sum(y != task.causal_model.run(x)["O"] for x, y in data) / len(data)
    assert 0.35 < share < 0.65
    with pytest.raises(WorkbenchError, match="exclude each other"):
        task_variant(task, {"left_only": 1, "right_only": 1})
    with pytest.raises(WorkbenchError, match="use 1 \\(on\\) or 0"):
        task_variant(task, {"negate": 2})


@pytest.fixture(scope="module")
def zoo_price_tagging():
    from experiments import zoo

    return zoo.get_model("price_tagging", seed=0, progress=False)


def test_loreft_learns_changed_rule_on_zoo_model(zoo_price_tagging, tmp_path):
    """The located variable changes (left := True, the lower bound no longer counts): LoReFT
    at the last token goes from the old rule's accuracy to >= 95% within 50 steps."""
    cfg = load_finetune_config(ROOT / "experiments" / "configs" / "finetune_price_tagging_ignore_lower.toml")
    cfg = FinetuneConfig(**{**cfg.to_dict(), "steps": 50, "eval_every": 50, "n_train": 800, "n_eval": 300})
    r = finetune(cfg, out_dir=tmp_path / "run")
    assert r.eval_curve[0]["accuracy"] < 0.85  # the old rule does not already solve the changed task
    assert r.final_accuracy >= 0.95
    assert (tmp_path / "run" / "finetune.json").is_file() and (tmp_path / "run" / "artifact" / "config.json").is_file()


def test_ddp_two_processes_on_gloo_agree_with_one(tmp_path):
    toml = tmp_path / "ddp.toml"
    toml.write_text(f'model = "config:gpt2-tiny"\ndata = "{DATA}"\nmethod = "loreft"\npositions = "f1+l1"\n'
                    f'share_weights = false\nrank = 4\nsteps = 3\nbatch_size = 8\nlr = 2e-2\n')
    single = finetune(load_finetune_config(toml), out_dir=tmp_path / "one")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
         "-m", "experiments.cli", "finetune", str(toml), "--out", str(tmp_path / "two")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    two = json.loads((tmp_path / "two" / "finetune.json").read_text())
    assert two["world_size"] == 2
    assert two["loss_curve"] == pytest.approx(single.loss_curve, abs=1e-5)
    w1 = weights(single)
    w2 = load_safetensors(tmp_path / "two" / "artifact" / "interventions.safetensors", "test")
    for k in w1:
        assert torch.allclose(w1[k], w2[k], atol=1e-5), k


# ---- the LM head on response tokens only (the fast loss) equals the full forward's loss

def _response_batch(vocab: int, seed: int = 0):
    """Right-padded prompt+response rows of different prompt and response lengths."""
    from experiments.finetune import Encoded

    g = torch.Generator().manual_seed(seed)
    lengths = [(5, 3), (7, 2), (4, 5), (9, 1)]  # (prompt, response)
    T = max(p + r for p, r in lengths)
    ids = torch.zeros(len(lengths), T, dtype=torch.long)
    mask, labels = torch.zeros_like(ids), torch.full_like(ids, -100)
    for i, (p, r) in enumerate(lengths):
        ids[i, :p + r] = torch.randint(1, vocab, (p + r,), generator=g)
        mask[i, :p + r] = 1
        labels[i, p:p + r] = ids[i, p:p + r]
    return Encoded(ids, mask, labels, torch.tensor([p for p, _ in lengths]))


def _word_tokenizer(vocab: int):
    """An in-memory tokenizer of the right size (the model is fed token ids directly)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t0"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", pad_token="t0", eos_token="t0")


def _hf_config(kind: str):
    import transformers

    ids = dict(bos_token_id=0, eos_token_id=0, pad_token_id=0)

    if kind == "gpt2":
        return transformers.GPT2Config(n_layer=3, n_embd=32, n_head=4, vocab_size=97, n_positions=64, **ids)
    if kind == "llama":
        return transformers.LlamaConfig(num_hidden_layers=3, hidden_size=32, intermediate_size=64,
                                        num_attention_heads=4, num_key_value_heads=2, vocab_size=97, **ids)
    # Gemma2 squashes its logits (final_logit_softcapping): the cut head must keep that.
    return transformers.Gemma2Config(num_hidden_layers=3, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                     num_key_value_heads=2, head_dim=8, vocab_size=97, final_logit_softcapping=0.5,
                                     **ids)


@pytest.mark.parametrize("kind", ["gpt2", "llama", "gemma2"])
def test_response_only_head_loss_equals_full_forward_loss(kind):
    import transformers

    from experiments.finetune.loss import FULL_HEAD_ONLY as _FULL_HEAD_ONLY
    from experiments.finetune.loss import response_loss_sum, train_micro_step
    from experiments.finetune.methods import build_method
    from interventions import Site, load_model

    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(_hf_config(kind))
    model = load_model(hf, device="cpu", tokenizer=_word_tokenizer(hf.config.vocab_size))
    config = FinetuneConfig(model="test", data="unused.jsonl", method="loreft", layers=[1, 2], rank=3,
                            positions="f1+l2")
    method = build_method(model, config, {})
    with torch.no_grad():  # move W, b off their initial values so the edit is not tiny
        for p in method.params:
            p.add_(0.3 * torch.randn_like(p))
    batch = _response_batch(hf.config.vocab_size)
    n_tokens = (batch.labels[:, 1:] != -100).sum().float()

    full_logits = method.logits(batch)
    assert full_logits.shape[:2] == batch.input_ids.shape  # the plain forward: [B, T, V]
    full_loss, full_correct, full_count = response_loss_sum(full_logits, batch.labels)
    (full_loss / n_tokens).backward()
    full_grads = [p.grad.clone() for p in method.params]
    for p in method.params:
        p.grad = None

    head_shapes = []
    hook = hf.get_output_embeddings().register_forward_hook(lambda _m, _a, out: head_shapes.append(out.shape))
    loss, correct, count = method.loss_terms(batch)
    hook.remove()
    assert head_shapes == [(int(n_tokens), hf.config.vocab_size)]  # the head saw only response rows
    assert hf not in _FULL_HEAD_ONLY
    assert abs(loss.item() - full_loss.item()) <= 1e-5 * max(1.0, abs(full_loss.item()))
    assert torch.equal(correct, full_correct) and torch.equal(count, full_count)
    assert count.tolist() == [3, 2, 5, 1]

    below = []  # the block under the lowest intervened layer (1) builds no autograd graph
    hook = model.module_at(Site(0, "block_output")).register_forward_hook(
        lambda _m, _a, out: below.append((out[0] if isinstance(out, tuple) else out).requires_grad))
    step_loss = train_micro_step(method, batch, n_tokens)
    hook.remove()
    assert below == [False]
    assert all(p.grad is None for p in hf.parameters())  # frozen weights get no gradient
    assert abs(step_loss.item() - full_loss.item()) <= 1e-5 * max(1.0, abs(full_loss.item()))
    for p, g in zip(method.params, full_grads):
        assert g.abs().max() > 0
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-6)


def test_softcapping_changes_the_loss_so_the_gemma2_check_can_fail():
    """Guard for the test above: without its softcap the same Gemma2 gives another loss."""
    import transformers

    from experiments.finetune import response_loss_sum

    batch = _response_batch(97)
    losses = []
    for cap in (0.5, None):
        torch.manual_seed(0)
        cfg = _hf_config("gemma2")
        cfg.final_logit_softcapping = cap
        hf = transformers.AutoModelForCausalLM.from_config(cfg).eval()
        with torch.no_grad():
            losses.append(response_loss_sum(hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits,
                                            batch.labels)[0].item())
    assert abs(losses[0] - losses[1]) > 1e-2
