"""What a model can do: its accuracy on each task's factual prompts (the same check a search
makes before it trains, experiments/search/data.py, which refuses a model below chance + 0.1),
beside chance (the majority answer's share). README's "A pretrained model" table.

    .venv/bin/python scripts/task_accuracy.py .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf \
        ioi ravel price_tagging hierarchical_equality_tokens mcqa mcqa4 arithmetic_carry
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("tasks", nargs="+")
    parser.add_argument("--n", type=int, default=400, help="factual prompts per task (the test and train pairs' bases)")
    args = parser.parse_args()

    from experiments.search import AlignmentSearch
    from interventions import load_model

    model = load_model(args.model, device="cpu")
    print("| task | accuracy | chance | distinct prompts | a search would |\n|---|---|---|---|---|")
    from causal.errors import WorkbenchError

    for task in args.tasks:
        name, _, options = task.partition(":")  # e.g. ravel:{"cities": ["Munich", "Tokyo"]}
        for n in (args.n, 4 * args.n):  # a task split over many variable sets needs more test pairs
            search = AlignmentSearch(model, name, task_options=json.loads(options) if options else {},
                                     layers=[0], positions=["last"], n_train=n // 2, n_test=n // 2,
                                     check_model_accuracy=False)
            try:
                split = search.split("main")
                break
            except WorkbenchError as e:
                split = None
                if n == args.n and str(e).startswith("config field 'n_test'"):  # too few kept: more prompts
                    print(f"({task}: {str(e)[:80]}...; again with {4 * n} prompts)", flush=True)
                    continue
                print(f"| {name} | - | - | - | refuse: {str(e)[:160]} |", flush=True)  # the search's own refusal
                break
        if split is None:
            continue
        chance = float(torch.bincount(split.factual).max()) / split.factual.numel()
        verdict = "run" if split.model_accuracy >= min(chance + 0.1, 0.99) else "refuse"
        print(f"| {name}{' (options)' if options else ''} | {split.model_accuracy:.3f} | {chance:.3f} | "
              f"{split.factual.numel()} | {verdict} |", flush=True)


if __name__ == "__main__":
    main()
