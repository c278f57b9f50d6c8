"""Our side of the end-to-end search benchmark: `AlignmentSearch.run()` timed whole, from
building the model to the last cell's IIA (data generation, the model-accuracy check,
preparation, training and evaluation all inside). Prints one BENCH_RESULT JSON line."""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import common  # noqa: E402
import search_task as st  # noqa: E402
from interventions import load_model  # noqa: E402
from search_data import search_for  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="folder written by bench/search_data.py (for its answer words)")
    p.add_argument("--layers", default="all", help="accepted for the shared command line: ours always runs every layer")
    p.add_argument("--time-layers", default="", help="accepted for the shared command line (pyvene's side)")
    p.add_argument("--loss-over", default="vocabulary", choices=["vocabulary", "answers"])
    args = p.parse_args(argv)
    meta = json.loads((Path(args.data) / "meta.json").read_text())
    dev = common.device()
    # transformers imports a model's code on first use; pyvene's side has it imported before
    # its clock starts (pyvene imports it), so ours does too.
    import transformers.models.gpt2.modeling_gpt2  # noqa: F401
    with common.PeakMemory(dev) as mem:
        t0 = time.perf_counter()
        hf = common.build_model(meta["model"])
        model = load_model(hf, device=str(dev), tokenizer=common.word_tokenizer(hf.config.vocab_size), name=meta["model"])
        search = search_for(model, meta["answers"], meta["n_train"], meta["n_test"], loss_over=args.loss_over)
        result = search.run()
        common.sync(dev)
        total = time.perf_counter() - t0
    rows = sorted((r for r in result.rows if r["method"] == "das"), key=lambda r: r["layer"])
    kept = result.manifest["data"]["main"]
    n_steps = len(rows) * -(-kept["n_train_kept"] // st.BATCH) * st.EPOCHS
    common.emit({"side": "ours", "task": "search_e2e", "model": meta["model"], "loss_over": args.loss_over,
                 "layers": [r["layer"] for r in rows], "iia_per_layer": [r["iia"] for r in rows],
                 "iia_mean": sum(r["iia"] for r in rows) / len(rows), "n_test": rows[0]["n_test"],
                 "n_train_kept": kept["n_train_kept"], "total_s": total, "steps": n_steps,
                 "examples_per_s": n_steps * st.BATCH / total, "peak_mem_bytes": mem.peak_bytes,
                 "timings": {k: v for k, v in search.timings.items() if isinstance(v, (int, float))},
                 "threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
