"""Check the pyreft import: a LoReFT checkpoint written by pyreft 0.1.0 itself
(`ReftModel.save`) loads through experiments.export.pyreft.import_pyreft and gives pyreft's
logits (max |difference| <= 1e-5, pyreft_export_check.TOLERANCE), for tied and untied weights over two layers.

Runs in the peers venv (pyreft is never a core dependency):
    bench/.venv-peers/bin/python bench/pyreft_import_check.py
Exit status 0 when every case agrees.

pyreft builds LoreftIntervention's W and b in bfloat16 unless told a dtype: the check builds
them in float32, so the comparison measures the import, not a dtype.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAYERS, RANK, POSITIONS = [0, 1], 4, "f1+l2"


def random_pyreft_loreft(pyreft, hf, layers: list[int], rank: int, share_weights: bool):
    """A pyreft LoReFT model built by pyreft itself, float32, its W and b drawn away from the
    identity so the interventions move the logits."""
    d = hf.config.hidden_size
    torch.manual_seed(1)
    groups = 1 if share_weights else 2  # untied: every layer's first-n, then every layer's last-n (pyreft's recipe)
    representations = [{"layer": layer, "component": "block_output", "low_rank_dimension": rank,
                        "intervention": pyreft.LoreftIntervention(embed_dim=d, low_rank_dimension=rank,
                                                                  dtype=torch.float32)}
                       for _ in range(groups) for layer in layers]
    reft_model = pyreft.get_reft_model(hf, pyreft.ReftConfig(representations=representations))
    reft_model.set_device("cpu")
    with torch.no_grad():
        for intervention in reft_model.interventions.values():
            intervention.learned_source.weight.normal_(0, 0.5)
            intervention.learned_source.bias.normal_(0, 0.5)
            intervention.eval()
    return reft_model


def check(share_weights: bool, work: Path) -> float:
    import pyreft
    import transformers

    from experiments.models import config_model_dir
    from experiments.export.pyreft import import_pyreft, pyreft_unit_locations
    from interventions.reft_artifact import encode_prompts
    from interventions.loading import load_model

    tag = "tied" if share_weights else "untied"
    words = "the cat sat on a mat dog ran to park hello world".split()
    path = config_model_dir("gpt2-tiny", words, 0)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path)).eval()
    reft_model = random_pyreft_loreft(pyreft, hf, LAYERS, RANK, share_weights)
    saved = work / f"{tag}-pyreft"
    reft_model.save(save_directory=str(saved))

    ours_model = load_model(str(path), device="cpu")
    imported = import_pyreft(saved, ours_model, positions=POSITIONS)
    prompts = ["the cat sat on a mat", "a dog ran", "hello world the park"]
    batch, lengths, _ = encode_prompts(ours_model, prompts, padding_side="right")
    locations = pyreft_unit_locations(imported, lengths)
    with torch.no_grad():
        _, theirs = reft_model({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]},
                               unit_locations={"sources->base": (None, locations)})
        with imported.attached(ours_model, lengths):
            ours = ours_model.hf(**batch).logits
        plain = ours_model.hf(**batch).logits
    diff = (theirs.logits - ours).abs().max().item()
    moved = (theirs.logits - plain).abs().max().item()
    print(f"{tag}: {len(imported.units)} interventions from {saved.name}, max |ours - pyreft| = {diff:.2e} "
          f"(the interventions move logits by {moved:.2e})")
    return diff if moved > 1e-3 else float("inf")


def main() -> int:
    from bench.pyreft_export_check import run_tied_and_untied

    return run_tied_and_untied(check, "pyreft import check")


if __name__ == "__main__":
    raise SystemExit(main())
