"""Where the end-to-end search's time goes: our `AlignmentSearch.run()` on the bench's task
(bench/search_task.py, GPT-2 small shape) under torch.profiler (operators, by self CPU time)
and cProfile (Python functions, by cumulative time). The top costs go in bench/README.md.

    .venv/bin/python bench/profile_search.py --data DIR [--layers 0,6,11] [--loss-over answers]
    (DIR from bench/search_data.py)
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

import common  # noqa: E402
import search_task as st  # noqa: E402
from experiments.search import AlignmentSearch  # noqa: E402
from interventions import load_model  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--layers", default="0,6,11")
    p.add_argument("--loss-over", default="vocabulary", choices=["vocabulary", "answers"])
    p.add_argument("--top", type=int, default=12)
    args = p.parse_args(argv)
    meta = json.loads((Path(args.data) / "meta.json").read_text())
    hf = common.build_model(meta["model"])
    model = load_model(hf, device="cpu", tokenizer=common.word_tokenizer(hf.config.vocab_size), name=meta["model"])
    search = AlignmentSearch(model, st.copy_task(meta["answers"]), layers=[int(x) for x in args.layers.split(",")],
                             positions=["last"], variables=["X"], k=st.K, batch_size=st.BATCH, epochs=st.EPOCHS,
                             lr=st.LR, n_train=meta["n_train"], n_test=meta["n_test"], seed=0, controls=[],
                             contrastive=False, loss_over=args.loss_over)
    python = cProfile.Profile()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        python.enable()
        search.run()
        python.disable()
    total = time.perf_counter() - t0
    print(f"search over layers {args.layers} (loss over the {args.loss_over}): {total:.1f} s under the profilers; "
          f"timings {search.timings}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    out = io.StringIO()
    pstats.Stats(python, stream=out).sort_stats("cumulative").print_stats(args.top * 2)
    print(out.getvalue())


if __name__ == "__main__":
    main()
