"""The pyreft round trip on a real Llama, SmolLM2-135M-Instruct (30 layers, width 576):

- export: a LoReFT trained by us on SmolLM2 (README's sentiment task, a few steps), written by
  experiments.export.pyreft.export_pyreft, loads with pyreft's ReftModel.load and gives our logits;
- import: a LoReFT built and saved by pyreft 0.1.0 itself loads through import_pyreft and gives
  pyreft's logits;

tied and untied, at two layers. In float64 the export agrees exactly (0.0, within
pyreft_export_check.TOLERANCE = 1e-5); the import too (0.0, within IMPORT_BOUND below). In float32 the
logits (near 40, over 30 layers) differ by rounding, about 5e-5; printed too.

Runs in the peers venv (pyreft is never a core dependency), on the model's converted Hugging
Face directory, which the project's own venv makes from the GGUF file (bench/common.smollm2_dir):
    bash scripts/fetch_models.sh && bench/.venv-peers/bin/python bench/pyreft_smollm2_check.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAYERS, RANK, POSITIONS = [8, 16], 4, "f1+l1"
# float32 shows the everyday difference (rounding over 30 layers and logits near 40); float64
# runs both sides with the same weights exactly, so it tests the mapping itself: the check.
DTYPES = (torch.float32, torch.float64)
# pyreft computes with its saved float32 R as it is (orthonormal only to ~1e-7); the import keeps
# those very numbers (OrthonormalRows.set_rows(exact=True)), so float64 agrees exactly here too.
IMPORT_BOUND = 1e-5
DATA = ROOT / "experiments" / "data" / "reft_sentiment_train.jsonl"


def prompts() -> list[str]:
    import json

    return [json.loads(line)["prompt"] for line in DATA.read_text().splitlines()[:4]]


def logits_with(reft_model, batch, locations):
    with torch.no_grad():
        _, theirs = reft_model({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]},
                               unit_locations={"sources->base": (None, locations)})
    return theirs.logits


def pyreft_load(pyreft, directory: Path, hf, dtype):
    """ReftModel.load, then the saved state dict again at `dtype` (pyreft loads W and b as bfloat16)."""
    reft_model = pyreft.ReftModel.load(str(directory), hf)
    for key, intervention in reft_model.interventions.items():
        intervention.learned_source.float()
        intervention.load_state_dict(torch.load(directory / f"intkey_{key}.bin", weights_only=True))
        intervention.to(dtype).eval()
    reft_model.set_device("cpu")
    return reft_model


def export_check(share_weights: bool, work: Path, model_dir: Path) -> dict:
    import pyreft
    import transformers

    from experiments.export.pyreft import export_pyreft, pyreft_unit_locations
    from experiments.finetune import FinetuneConfig, finetune
    from interventions.loading import load_model
    from interventions.reft_artifact import encode_prompts, load_reft

    tag = "tied" if share_weights else "untied"
    cfg = FinetuneConfig(model=str(model_dir), data=str(DATA), method="loreft", layers=LAYERS, rank=RANK,
                         positions=POSITIONS, share_weights=share_weights, steps=4, batch_size=4, lr=2e-2, seed=3,
                         eval_generate=False, n_eval=8)
    result = finetune(cfg, out_dir=work / f"export-{tag}", verbose=False)
    diffs = {}
    for dtype in DTYPES:
        ours_model = load_model(str(model_dir), device="cpu", dtype=dtype)
        # float64 copies of the float32 weights fingerprint differently; they are the same numbers.
        reft = load_reft(result.artifact_path, model=ours_model, allow_fingerprint_mismatch=dtype != torch.float32)
        batch, lengths, _ = encode_prompts(ours_model, prompts(), padding_side="right")
        with torch.no_grad(), reft.attached(ours_model, lengths):
            ours = ours_model.hf(**batch).logits
        export_dir = export_pyreft(reft, work / f"export-{tag}-pyreft-{dtype}")
        hf = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), torch_dtype=dtype).eval()
        reft_model = pyreft_load(pyreft, export_dir, hf, dtype)
        theirs = logits_with(reft_model, batch, pyreft_unit_locations(reft, lengths))
        diffs[dtype] = (theirs - ours).abs().max().item()
        with torch.no_grad():
            moved = (ours - ours_model.hf(**batch).logits).abs().max().item()
        print(f"export {tag} {dtype}: {len(reft.units)} interventions, max |ours - pyreft| = {diffs[dtype]:.2e} "
              f"(the intervention moves logits by {moved:.2e})", flush=True)
    return diffs


def import_check(share_weights: bool, work: Path, model_dir: Path) -> dict:
    import pyreft
    import transformers

    tag = "tied" if share_weights else "untied"
    return {dtype: _import_at(pyreft, transformers, share_weights, tag, work, model_dir, dtype) for dtype in DTYPES}


def _import_at(pyreft, transformers, share_weights, tag, work, model_dir, dtype) -> float:
    from bench.pyreft_import_check import random_pyreft_loreft
    from experiments.export.pyreft import import_pyreft, pyreft_unit_locations
    from interventions.loading import load_model
    from interventions.reft_artifact import encode_prompts

    hf = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), torch_dtype=dtype).eval()
    reft_model = random_pyreft_loreft(pyreft, hf, LAYERS, RANK, share_weights)
    saved = work / f"import-{tag}-pyreft-{dtype}"
    reft_model.save(save_directory=str(saved))
    # pyreft's side is that checkpoint as pyreft loads it, at the model's dtype (its rotation is a
    # parametrization: cast in memory it would be recomputed, not the saved numbers).
    reft_model = pyreft_load(pyreft, saved, hf, dtype)

    ours_model = load_model(str(model_dir), device="cpu", dtype=dtype)
    imported = import_pyreft(saved, ours_model, positions=POSITIONS)
    batch, lengths, _ = encode_prompts(ours_model, prompts(), padding_side="right")
    theirs = logits_with(reft_model, batch, pyreft_unit_locations(imported, lengths))
    with torch.no_grad():
        with imported.attached(ours_model, lengths):
            ours = ours_model.hf(**batch).logits
        moved = (theirs - ours_model.hf(**batch).logits).abs().max().item()
    diff = (theirs - ours).abs().max().item()
    # Both sides re-orthonormalise the saved float32 rotation (our QR, torch's parametrization in
    # pyreft): the rotations they end up with differ by float32 rounding, and 30 layers grow that.
    ours_r = torch.stack([u.rotation.detach().double() for u in imported.units.values()])
    their_r = torch.stack([i.rotate_layer.weight.detach().double().T for i in reft_model.interventions.values()])
    r_diff = max(min((o - t).abs().max().item() for t in their_r) for o in ours_r)  # each to its match
    print(f"import {tag} {dtype}: {len(imported.units)} interventions, max |ours - pyreft| = {diff:.2e} "
          f"(the interventions move logits by {moved:.2e}; the rotations differ by {r_diff:.1e})", flush=True)
    return diff if moved > 1e-3 else float("inf")


def main() -> int:
    import os
    import tempfile

    from bench.pyreft_export_check import TOLERANCE

    from bench.common import smollm2_dir

    model_dir = smollm2_dir()  # the GGUF dequantized by the project's venv (the peers venv has no gguf)
    print(f"SmolLM2-135M-Instruct from {model_dir}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("DII_CACHE", str(Path(tmp) / "cache"))
        diffs = [check(share, Path(tmp), model_dir) for check in (export_check, import_check)
                 for share in (True, False)]
    export, imported = max(d[torch.float64] for d in diffs[:2]), max(d[torch.float64] for d in diffs[2:])
    print(f"float64: export {export:.2e} (tolerance {TOLERANCE}), import {imported:.2e} (bound {IMPORT_BOUND}); "
          f"float32: {max(d[torch.float32] for d in diffs):.2e} at most")
    ok = export <= TOLERANCE and imported <= IMPORT_BOUND
    print("pyreft round trip on SmolLM2:", "PASS" if ok else f"FAIL (tolerance {TOLERANCE})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
