"""Our side of the IIA comparison: a RotatedSubspace trained through SuffixRunner (what
AlignmentSearch runs per cell) on bench/iia_data.py's examples with the same minibatches,
steps and learning rate as the pyvene side; IIA on the held-out examples."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import common  # noqa: E402
import iia_common  # noqa: E402
from interventions import RotatedSubspace, Site, SuffixRunner, load_model  # noqa: E402
from interventions.positions import Batch  # noqa: E402


def main(argv=None):
    args = iia_common.iia_args(argv)
    meta, d = iia_common.load(args.data)
    model = load_model(meta["model_path"], device="cpu")
    site = Site(args.layer, "block_output", "last")
    runner = SuffixRunner(model, site)

    def batch(ids):
        last = torch.full((ids.shape[0],), ids.shape[1] - 1)
        return Batch({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, positions=last, answer_positions=last)

    with torch.no_grad():
        prepared = {s: runner.prepare(batch(d[f"{s}_base"])) for s in ("train", "test")}
        sources = {s: runner.prepare(batch(d[f"{s}_source"])).acts[site.key] for s in ("train", "test")}
    torch.manual_seed(args.seed)
    module = RotatedSubspace(model.site_dim(site), args.k)
    opt = torch.optim.Adam(module.parameters(), lr=args.lr)
    t0 = time.perf_counter()
    for idx in iia_common.batch_order(len(d["train_label"]), args.batch, args.steps, args.seed):
        src = sources["train"][idx]
        logits = runner.logits(prepared["train"].select(idx), lambda h: module(h, src))
        loss = torch.nn.functional.cross_entropy(logits, d["train_label"][idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train_s = time.perf_counter() - t0
    with torch.no_grad():
        logits = runner.logits(prepared["test"], lambda h: module(h, sources["test"]))
    common.emit({"side": "ours", "task": "iia", "data_task": meta["task"], "variable": meta["variable"],
                 "layer": args.layer, "k": args.k, "steps": args.steps, "batch": args.batch,
                 "iia": iia_common.iia(logits, d["answer_ids"], d["test_label"]),
                 "final_loss": loss.item(), "train_s": train_s, "n_test": len(d["test_label"])})


if __name__ == "__main__":
    main()
