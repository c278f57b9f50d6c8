"""The IIA comparison's data, made once with our causal package and tokenizer, so that
pyvene and we train and test on exactly the same token ids (bench/peers/pyvene_iia.py and
bench/ours_iia.py read it). Uses a zoo model (trained and cached on first use).

    python bench/iia_data.py --out /tmp/iia     # writes data.safetensors + meta.json
"""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from causal import CounterfactualDataset, get_task  # noqa: E402
from experiments import zoo  # noqa: E402
from interventions import answer_ids, encode, load_model  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="hierarchical_equality_tokens")
    p.add_argument("--variable", default="V1")
    p.add_argument("--n-train", type=int, default=1024)
    p.add_argument("--n-test", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    task = get_task(args.task)
    path = zoo.get_model(args.task, seed=0, progress=False)
    model = load_model(str(path), device="cpu")
    answers = answer_ids(model, task)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for split, n, seed in (("train", args.n_train, args.seed), ("test", args.n_test, args.seed + 1)):
        ds = CounterfactualDataset.generate(task, n, intervened=[[args.variable]], seed=seed)
        base = encode(model, task, [ex.base for ex in ds.examples], "last")
        source = encode(model, task, [ex.sources[0] for ex in ds.examples], "last")
        T = base.inputs["input_ids"].shape[1]
        # Fixed-length prompts: the last position is the same index everywhere (no padding).
        assert int(base.inputs["attention_mask"].sum()) == n * T, "iia_data expects unpadded prompts"
        tensors[f"{split}_base"] = base.inputs["input_ids"].cpu().contiguous()
        tensors[f"{split}_source"] = source.inputs["input_ids"].cpu().contiguous()
        tensors[f"{split}_label"] = torch.tensor([answers[ex.counterfactual_output] for ex in ds.examples])
        tensors[f"{split}_base_label"] = torch.tensor([answers[ex.base_output] for ex in ds.examples])
    tensors["answer_ids"] = torch.tensor(sorted(answers.values()))
    save_file(tensors, str(out / "data.safetensors"))
    meta = {"task": args.task, "variable": args.variable, "model_path": str(path),
            "n_layers": model.n_layers, "seq_len": int(tensors["train_base"].shape[1])}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
