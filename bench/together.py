"""Cells trained together against one at a time (`train_together`), on the zoo grids where cells
share a layer: three seeds of every site. Both sides run the same search (same cells, seeds and
IIA, checked), alternately, several times; the median wall time of each and their ratio, with
the load average, go to stdout and bench/results/cpu_together.json.

    .venv/bin/python bench/together.py            # about 10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GRIDS = {
    # the MLP (no KV cache): every layer, three seeds
    "mlp": dict(task="hierarchical_equality", layers="all", seeds=[0, 1, 2]),
    # the zoo transformer: every layer at tokens b and d, three seeds
    "transformer": dict(task="hierarchical_equality_tokens", layers="all", positions=["b", "d"], seeds=[0, 1, 2]),
}


def run_once(grid: str, together: bool, steps: int) -> tuple[float, dict]:
    from experiments.search import AlignmentSearch

    fields = dict(GRIDS[grid])
    task = fields.pop("task")
    search = AlignmentSearch(f"zoo:{task}", task, steps=steps, n_train=1000, n_test=300, train_together=together,
                             **fields)
    search.model  # load before the clock starts
    t0 = time.perf_counter()
    run = search.run()
    return time.perf_counter() - t0, {(r["cell"], r["variable"]): r["iia"] for r in run.rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    from experiments.threads import use_cpu_threads

    threads = use_cpu_threads()
    out = {"threads": threads, "load_before": os.getloadavg(), "steps": args.steps, "grids": {}}
    for grid in GRIDS:
        times = {True: [], False: []}
        iia = {}
        for _ in range(args.repeats):
            for together in (False, True):  # alternately
                seconds, iia[together] = run_once(grid, together, args.steps)
                times[together].append(seconds)
        diff = max(abs(iia[True][k] - iia[False][k]) for k in iia[False])
        alone, joint = statistics.median(times[False]), statistics.median(times[True])
        out["grids"][grid] = {"alone_s": round(alone, 2), "together_s": round(joint, 2),
                              "speedup": round(alone / joint, 2), "max_iia_difference": diff,
                              "runs_alone_s": [round(t, 2) for t in times[False]],
                              "runs_together_s": [round(t, 2) for t in times[True]], "n_rows": len(iia[False])}
        print(f"{grid}: one at a time {alone:.1f} s, together {joint:.1f} s: {alone / joint:.2f}x "
              f"(median of {args.repeats}, alternating; max IIA difference {diff:.1e})", flush=True)
    out["load_after"] = os.getloadavg()
    print(f"load average before {out['load_before'][0]:.2f}, after {out['load_after'][0]:.2f}; {threads} threads")
    path = ROOT / "bench" / "results" / "cpu_together.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
