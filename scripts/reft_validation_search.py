"""The small learning-rate search behind a shipped `dii compare` config: every method at a few
learning rates, trained on 80% of the config's training file and scored by generation on the
other 20% (the validation split). The test file is never read. Prints the table for the README
and the [overrides.<method>] lines to paste into the config.

    .venv/bin/python scripts/reft_validation_search.py experiments/configs/compare_smollm2_code.toml \
        --out runs/validation-code
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from experiments.finetune.compare import load_compare_config
from experiments.finetune.config import FinetuneConfig
from experiments.finetune.train import finetune

# Two rates a decade-ish apart per family, around the values the ReFT paper and peft use.
LEARNING_RATES = {"loreft": [5e-3, 2e-2], "direft": [5e-3, 2e-2], "lora": [2e-3, 1e-2],
                  "prefix_tuning": [1e-2, 5e-2], "prompt_tuning": [1e-2, 5e-2], "full": [3e-5, 2e-4]}


def validation_config(shared: dict, method: str, lr: float) -> FinetuneConfig:
    """The comparison's settings on the training file alone: eval_data dropped, so a seeded
    eval_fraction (20%) of it is held out."""
    settings = {k: v for k, v in shared.items() if k != "eval_data"}
    return FinetuneConfig.from_dict({**settings, "method": method, "lr": lr, "seed": 0, "eval_fraction": 0.2,
                                     "eval_every": 0})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="a dii compare config with data and eval_data")
    parser.add_argument("--out", required=True, help="folder for validation.json")
    parser.add_argument("--methods", nargs="*", help="default: the config's methods")
    args = parser.parse_args()

    compare = load_compare_config(args.config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for method in args.methods or compare.methods:
        for lr in LEARNING_RATES[method]:
            r = finetune(validation_config(compare.finetune, method, lr))
            rows.append({"method": method, "lr": lr, "validation_generation": r.generation_accuracy,
                         "validation_loss": r.final_loss, "base_generation": r.base_generation_accuracy,
                         "wall_seconds": r.wall_seconds})
            print(f"{method:14s} lr {lr:<8g} validation generation {r.generation_accuracy:.3f} "
                  f"loss {r.final_loss:.3f} ({r.wall_seconds:.0f} s)", flush=True)
            tmp = out / "validation.json.tmp"
            tmp.write_text(json.dumps({"config": str(args.config), "rows": rows}, indent=1))
            os.replace(tmp, out / "validation.json")

    print("\n| method | " + " | ".join("lr / validation accuracy" for _ in range(2)) + " | chosen |")
    print("|---|---|---|---|")
    chosen = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == method]
        # Ties (e.g. both 0) go to the lower validation loss.
        best = max(rs, key=lambda r: (r["validation_generation"], -r["validation_loss"]))
        chosen[method] = best["lr"]
        cells = " | ".join(f"{r['lr']:g}: {r['validation_generation']:.3f}" for r in rs)
        print(f"| {method} | {cells} | {best['lr']:g} |")
    print()
    for method, lr in chosen.items():
        print(f"[overrides.{method}]\nlr = {lr:g}")


if __name__ == "__main__":
    main()
