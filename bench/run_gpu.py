"""The GPU benchmark set (started by bench/gpu.sh): ours against pyvene and pyreft on
GPT-2 small and on a Llama-shaped ~1B model in bf16, plus our DAS step's achieved FLOP/s
as a share of the GPU's bf16 peak. Each side runs in its own process with a timeout; a
failure is recorded and the rest still runs; the most important comparisons go first and
the rest are skipped once the time budget is spent.

Writes everything to one file, $OUT/gpu_results.json (rewritten after each comparison),
and prints the ratio table. --smoke runs the same set on a tiny model (to test the script).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from driver import BENCH, Comparison, compare, environment, table, write_json

DAS_METRICS = [
    ("examples_per_s", "examples_per_s", "examples_per_s", "higher"),
    ("examples_per_s (ours incl. prepare)", "examples_per_s", "examples_per_s_incl_prepare", "higher"),
    ("peak_mem_bytes", "peak_mem_bytes", "peak_mem_bytes", "lower"),
    ("share_of_bf16_peak", "share_of_peak", "share_of_peak", "higher"),
]
REFT_METRICS = [
    ("tokens_per_s", "tokens_per_s", "tokens_per_s", "higher"),
    ("peak_mem_bytes", "peak_mem_bytes", "peak_mem_bytes", "lower"),
    ("final_loss", "final_loss", "final_loss", "same"),
]


def comparisons(smoke: bool) -> list[Comparison]:
    gpt2 = ["--model", "tiny"] if smoke else ["--model", "gpt2"]
    llama = ["--model", "tinyllama", "--dtype", "bf16"] if smoke else ["--model", "llama1b", "--dtype", "bf16"]
    mid = "1" if smoke else "6"
    reft_layers = "0,1" if smoke else "2,4,6,8"
    steps = (lambda w, s: ["--warmup", "1", "--steps", "2"]) if smoke else (lambda w, s: ["--warmup", str(w), "--steps", str(s)])
    return [
        Comparison("das_gpt2_b64", "peers/pyvene_das.py", "ours_das.py",
                   [*gpt2, "--batch", "64", "--seq", "32", "--layer", mid, "--k", "16", *steps(5, 30), "--count-flops"],
                   DAS_METRICS, timeout_s=120),
        Comparison("loreft_gpt2", "peers/pyreft_loreft.py", "ours_loreft.py",
                   [*gpt2, "--layers", reft_layers, "--rank", "4", "--batch", "8", "--prompt-len", "48",
                    "--response-len", "16", *steps(3, 20)], REFT_METRICS, timeout_s=120),
        Comparison("das_llama1b_bf16", "peers/pyvene_das.py", "ours_das.py",
                   [*llama, "--batch", "32", "--seq", "32", "--layer", "1" if smoke else "8", "--k", "16",
                    *steps(3, 10), "--count-flops"], DAS_METRICS, timeout_s=150),
        Comparison("loreft_llama1b_bf16", "peers/pyreft_loreft.py", "ours_loreft.py",
                   [*llama, "--layers", reft_layers, "--rank", "4", "--batch", "8", "--prompt-len", "48",
                    "--response-len", "16", *steps(2, 10)], REFT_METRICS, timeout_s=150),
        Comparison("das_sweep_gpt2", "peers/pyvene_das.py", "ours_das.py",
                   [*gpt2, "--sweep", "--batch", "64", "--seq", "32", "--k", "16", *steps(2, 10)],
                   [("sweep_total_s", "total_s", "total_s", "lower"), *DAS_METRICS[:3]], timeout_s=150),
        Comparison("das_gpt2_b512", "peers/pyvene_das.py", "ours_das.py",
                   [*gpt2, "--batch", "512", "--seq", "32", "--layer", mid, "--k", "16", *steps(3, 15), "--count-flops"],
                   DAS_METRICS, timeout_s=120),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or str(BENCH / "results"))
    ap.add_argument("--budget-s", type=float, default=450, help="stop starting comparisons after this")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated comparison names (default: all)")
    args = ap.parse_args()
    out = Path(args.out) / ("gpu_smoke_results.json" if args.smoke else "gpu_results.json")
    python = sys.executable
    t0 = time.perf_counter()
    doc = {"environment": environment(python), "rows": [], "skipped": [], "crosscheck": None}
    only = {n for n in args.only.split(",") if n}
    for c in comparisons(args.smoke):
        if only and c.name not in only:
            continue
        left = args.budget_s - (time.perf_counter() - t0)
        if left < 30:
            doc["skipped"].append(c.name)
            continue
        c.timeout_s = int(min(c.timeout_s, left / 2))
        print(f"running {c.name} (timeout {c.timeout_s} s per side) ...", flush=True)
        doc["rows"].append(compare(c, python, python))
        doc["total_s"] = time.perf_counter() - t0
        write_json(out, doc)
    left = args.budget_s - (time.perf_counter() - t0)
    if left > 30 and not only:
        print("running crosscheck ...", flush=True)
        try:
            proc = subprocess.run([python, str(BENCH / "crosscheck.py")], capture_output=True, text=True,
                                  timeout=min(120, left), cwd=BENCH.parent,
                                  env={**os.environ, "OUT": str(Path(args.out) / "crosscheck")})
            doc["crosscheck"] = {"returncode": proc.returncode, "stdout": proc.stdout[-3000:],
                                 "stderr_tail": proc.stderr[-2000:] if proc.returncode else ""}
        except subprocess.TimeoutExpired:
            doc["crosscheck"] = {"error": "timed out"}
    else:
        doc["skipped"].append("crosscheck")
    doc["total_s"] = time.perf_counter() - t0
    write_json(out, doc)
    print()
    print(table(doc["rows"]))
    if doc["crosscheck"]:
        print("\n" + (doc["crosscheck"].get("stdout") or str(doc["crosscheck"])))
    if doc["skipped"]:
        print("skipped (time budget):", ", ".join(doc["skipped"]))
    print(f"\ntotal {doc['total_s']:.0f} s; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
