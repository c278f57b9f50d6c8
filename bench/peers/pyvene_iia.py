"""pyvene side of the IIA comparison: DAS (LowRankRotatedSpaceIntervention) at one layer's
block_output on the last token of a zoo model, trained on bench/iia_data.py's examples with
the same minibatches, steps and learning rate as ours; IIA on the held-out examples."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import common  # noqa: E402
import iia_common  # noqa: E402
from peers import shims  # noqa: E402

shims.install()
import pyvene as pv  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402


def main():
    args = iia_common.iia_args()
    meta, d = iia_common.load(args.data)
    model = AutoModelForCausalLM.from_pretrained(meta["model_path"]).eval().requires_grad_(False)
    torch.manual_seed(args.seed)
    intervenable = pv.IntervenableModel(pv.IntervenableConfig(
        model_type=type(model),
        representations=[pv.RepresentationConfig(args.layer, "block_output", "pos", 1, low_rank_dimension=args.k)],
        intervention_types=pv.LowRankRotatedSpaceIntervention), model)
    intervenable.disable_model_gradients()
    rot = [p for v in intervenable.interventions.values()
           for p in (v[0] if isinstance(v, (tuple, list)) else v).rotate_layer.parameters()]
    opt = torch.optim.Adam(rot, lr=args.lr)
    pos = meta["seq_len"] - 1
    t0 = time.perf_counter()
    for idx in iia_common.batch_order(len(d["train_label"]), args.batch, args.steps, args.seed):
        _, cf = intervenable({"input_ids": d["train_base"][idx]}, [{"input_ids": d["train_source"][idx]}],
                             {"sources->base": pos})
        loss = torch.nn.functional.cross_entropy(cf.logits[:, -1], d["train_label"][idx])
        loss.backward()
        opt.step()
        intervenable.set_zero_grad()
    train_s = time.perf_counter() - t0
    with torch.no_grad():
        _, cf = intervenable({"input_ids": d["test_base"]}, [{"input_ids": d["test_source"]}], {"sources->base": pos})
    common.emit({"side": "pyvene", "task": "iia", "data_task": meta["task"], "variable": meta["variable"],
                 "layer": args.layer, "k": args.k, "steps": args.steps, "batch": args.batch,
                 "iia": iia_common.iia(cf.logits[:, -1], d["answer_ids"], d["test_label"]),
                 "final_loss": loss.item(), "train_s": train_s, "n_test": len(d["test_label"])})


if __name__ == "__main__":
    main()
