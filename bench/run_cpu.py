"""The CPU benchmark set: ours against pyvene and pyreft, side by side, in under 10 minutes
on 2 cores. Creates bench/.venv-peers first if it is missing (bench/setup_peers.sh).

    .venv/bin/python bench/run_cpu.py            # or: make bench
    .venv/bin/python bench/run_cpu.py --quick    # tiny model, a smoke run of the whole set

Every side runs in its own process with the peers venv's interpreter (same torch and
transformers for both). Writes bench/results/cpu_<name>.json per comparison and
bench/results/cpu_summary.json, and prints the ratio table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from pathlib import Path

from driver import BENCH, Comparison, compare, environment, table, write_json

PEERS_PY = BENCH / ".venv-peers" / "bin" / "python"

THROUGHPUT_AND_MEMORY = [
    ("examples_per_s", "examples_per_s", "examples_per_s", "higher"),
    ("peak_mem_bytes", "peak_mem_bytes", "peak_mem_bytes", "lower"),
]


def comparisons(quick: bool) -> list[Comparison]:
    model = ["--model", "tiny", "--layer", "1"] if quick else ["--model", "gpt2", "--layer", "6"]
    reft_layers = ["--layers", "0,1"] if quick else ["--layers", "2,4,6,8"]
    return [
        # GPT-2 small, batch 32, 16 tokens, layer 6 block_output, last position, k = 16.
        Comparison("das_layer6", "peers/pyvene_das.py", "ours_das.py",
                   [*model, "--batch", "32", "--seq", "16", "--k", "16", "--warmup", "2", "--steps", "8"],
                   [*THROUGHPUT_AND_MEMORY,
                    ("examples_per_s (ours incl. prepare)", "examples_per_s", "examples_per_s_incl_prepare", "higher")]),
        # Every layer at the last position: the whole sweep's wall time, setup included.
        Comparison("das_sweep_all_layers", "peers/pyvene_das.py", "ours_das.py",
                   [*model[:2], "--sweep", "--batch", "32", "--seq", "16", "--k", "16", "--warmup", "1", "--steps", "3"],
                   [("sweep_total_s", "total_s", "total_s", "lower"), *THROUGHPUT_AND_MEMORY], timeout_s=400),
        # LoReFT r = 4 at layers 2,4,6,8 on f1+l1, batch 8 of 48 prompt + 16 response tokens.
        Comparison("loreft", "peers/pyreft_loreft.py", "ours_loreft.py",
                   [*model[:2], *reft_layers, "--rank", "4", "--batch", "8", "--prompt-len", "48",
                    "--response-len", "16", "--warmup", "1", "--steps", "5"],
                   [("tokens_per_s", "tokens_per_s", "tokens_per_s", "higher"),
                    ("peak_mem_bytes", "peak_mem_bytes", "peak_mem_bytes", "lower"),
                    ("final_loss", "final_loss", "final_loss", "same")]),
    ]


def iia_comparison(quick: bool) -> Comparison | None:
    """IIA after the same steps on the same zoo-task examples (data made once by iia_data.py)."""
    data = Path(tempfile.mkdtemp(prefix="dii-bench-iia-"))
    n = ["--n-train", "256", "--n-test", "128"] if quick else []
    proc = subprocess.run([str(PEERS_PY), str(BENCH / "iia_data.py"), "--out", str(data), *n],
                          capture_output=True, text=True, timeout=900, cwd=BENCH.parent)
    if proc.returncode != 0:
        print("iia_data.py failed:\n" + (proc.stdout + proc.stderr)[-2000:], flush=True)
        return None
    steps = "20" if quick else "150"
    return Comparison("iia_zoo_task", "peers/pyvene_iia.py", "ours_iia.py",
                      ["--data", str(data), "--layer", "2", "--k", "8", "--batch", "64", "--steps", steps],
                      [("iia (test)", "iia", "iia", "same"), ("train_s", "train_s", "train_s", "lower")],
                      timeout_s=600)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny model: checks the set runs, measures nothing useful")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch/OpenMP threads for every side (default: torch's, one per core); "
                         "1 is steadier when other processes share the CPUs")
    ap.add_argument("--only", default=None, help="comma-separated comparison names (and/or 'crosscheck')")
    args = ap.parse_args()
    if not PEERS_PY.exists():
        print("bench/.venv-peers is missing: creating it (bench/setup_peers.sh, a few minutes) ...", flush=True)
        subprocess.run(["bash", str(BENCH / "setup_peers.sh")], check=True)
    only = set(args.only.split(",")) if args.only else None
    if args.threads:  # inherited by every side's process
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    results_dir = BENCH / "results"
    prefix = "cpu_quick_" if args.quick else "cpu_"
    t0 = time.perf_counter()
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 2):
        print(f"warning: load average {load:.1f} on {os.cpu_count()} cores: other processes share the CPUs, "
              "so timings are unreliable (OpenMP threads waiting on each other); --threads 1 is steadier", flush=True)
    rows = []
    todo = comparisons(args.quick)
    if not only or "iia_zoo_task" in only:
        print("making the IIA comparison's data (trains the zoo model on first use) ...", flush=True)
        iia = iia_comparison(args.quick)
        todo += [iia] if iia else []
    for c in todo:
        if only and c.name not in only:
            continue
        print(f"running {c.name} ...", flush=True)
        row = compare(c, str(PEERS_PY), str(PEERS_PY))
        write_json(results_dir / f"{prefix}{c.name}.json", row)
        rows.append(row)
    check = None
    if not only or "crosscheck" in only:
        print("running crosscheck ...", flush=True)
        proc = subprocess.run([str(PEERS_PY), str(BENCH / "crosscheck.py")], capture_output=True, text=True,
                              timeout=300, cwd=BENCH.parent)
        check = {"returncode": proc.returncode, "table": proc.stdout.strip().splitlines()[-6:],
                 "stderr_tail": proc.stderr[-2000:] if proc.returncode else ""}
    summary = {"environment": environment(str(PEERS_PY)), "total_s": time.perf_counter() - t0,
               "load_average_at_start": load, "threads": args.threads,
               "rows": [{"name": r["name"], "metrics": r["metrics"],
                         "errors": {s: r[s]["error"] for s in ("peer", "ours") if "error" in r[s]}} for r in rows],
               "crosscheck": check}
    write_json(results_dir / f"{prefix}summary.json", summary)
    print()
    print(table(rows))
    if check is not None:
        print("\n" + "\n".join(check["table"]))
    print(f"\ntotal {summary['total_s']:.0f} s; results in {results_dir}/{prefix}*.json")
    for r in rows:
        if r["name"] == "iia_zoo_task" and all(isinstance(r[s].get("iia"), float) for s in ("peer", "ours")):
            gap = abs(r["ours"]["iia"] - r["peer"]["iia"])
            print(f"IIA gap |ours - pyvene| = {gap:.3f} ({'within' if gap <= 0.02 else 'OUTSIDE'} the 0.02 target)")
    failed = any("error" in r[s] for r in rows for s in ("peer", "ours")) or (check is not None and check["returncode"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
