"""Check the pyreft export: a LoReFT intervention trained by us, exported with
experiments.export.pyreft, loads with pyreft's ReftModel.load and gives the same logits as
ours (max |difference| <= 1e-5), for tied and untied weights over two layers.

Runs in the peers venv (pyreft is never a core dependency):
    bench/.venv-peers/bin/python bench/pyreft_export_check.py
Exit status 0 when every case agrees.

pyreft 0.1.0 builds LoreftIntervention's W and b in bfloat16 unless told a dtype, and
ReftModel.load does not pass one; to compare to 1e-5 we cast W and b to float32 and load
the same exported state dict again through pyreft's own load_state_dict.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOLERANCE = 1e-5


def check(share_weights: bool, work: Path) -> float:
    import pyreft
    import transformers

    from experiments.finetune import FinetuneConfig, finetune
    from experiments.export.pyreft import export_pyreft, pyreft_unit_locations
    from interventions.reft_artifact import encode_prompts, load_reft
    from interventions.loading import load_model

    tag = "tied" if share_weights else "untied"
    cfg = FinetuneConfig(model="config:gpt2-tiny", data=str(ROOT / "experiments/data/instructions_tiny.jsonl"),
                         method="loreft", layers=[0, 1], rank=4, positions="f1+l2", share_weights=share_weights,
                         steps=8, batch_size=8, lr=2e-2, seed=3)
    result = finetune(cfg, out_dir=work / tag, verbose=False)
    from experiments.finetune import jsonl_examples, words_of
    from experiments.models import config_model_dir

    train_ex, eval_ex = jsonl_examples(cfg)
    path = config_model_dir("gpt2-tiny", words_of(train_ex + eval_ex), cfg.model_seed)
    ours_model = load_model(str(path), device="cpu")
    reft = load_reft(result.artifact_path, model=ours_model)

    prompts = [ex.prompt for ex in eval_ex[:6]]
    batch, lengths, _ = encode_prompts(ours_model, prompts, padding_side="right")
    with torch.no_grad(), reft.attached(ours_model, lengths):
        ours = ours_model.hf(**batch).logits

    export_dir = export_pyreft(reft, work / f"{tag}-pyreft")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path))
    hf.eval()
    reft_model = pyreft.ReftModel.load(str(export_dir), hf)
    for key, intervention in reft_model.interventions.items():
        intervention.learned_source.float()
        state = torch.load(export_dir / f"intkey_{key}.bin", weights_only=True)
        intervention.load_state_dict(state)
    reft_model.set_device("cpu")
    for intervention in reft_model.interventions.values():
        intervention.eval()
    locations = pyreft_unit_locations(reft, lengths)
    with torch.no_grad():
        _, theirs = reft_model({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]},
                               unit_locations={"sources->base": (None, locations)})
    diff = (theirs.logits - ours).abs().max().item()
    moved = (theirs.logits - hf(**batch).logits).abs().max().item()
    print(f"{tag}: {len(reft.units)} interventions, max |ours - pyreft| = {diff:.2e} "
          f"(the intervention moves logits by {moved:.2e})")
    return diff


def run_tied_and_untied(check, name: str) -> int:
    """check(share_weights, work_dir) -> max difference, for tied and untied weights; 0 when both agree."""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("DII_CACHE", str(Path(tmp) / "cache"))
        diffs = [check(share, Path(tmp)) for share in (True, False)]
    ok = all(d <= TOLERANCE for d in diffs)
    print(f"{name}:", "PASS" if ok else f"FAIL (tolerance {TOLERANCE})")
    return 0 if ok else 1


def main() -> int:
    return run_tied_and_untied(check, "pyreft export check")


if __name__ == "__main__":
    raise SystemExit(main())
