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

from driver import BENCH, Comparison, compare, environment, memory_above_peer, ratio, run_side, table, write_json

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
                    ("examples_per_s (ours incl. prepare)", "examples_per_s", "examples_per_s_incl_prepare", "higher")],
                   repeats=1 if quick else 3),
        # Every layer at the last position: the whole sweep's wall time, setup included.
        Comparison("das_sweep_all_layers", "peers/pyvene_das.py", "ours_das.py",
                   [*model[:2], "--sweep", "--batch", "32", "--seq", "16", "--k", "16", "--warmup", "1", "--steps", "3"],
                   [("sweep_total_s", "total_s", "total_s", "lower"), *THROUGHPUT_AND_MEMORY], timeout_s=400),
        # LoReFT r = 4 at layers 2,4,6,8 on f1+l1, batch 8 of 48 prompt + 16 response tokens:
        # against pyreft, and against peft's LoRA (r = 4 on the same layers' attention).
        *(Comparison(name, peer, "ours_loreft.py",
                     [*model[:2], *reft_layers, "--rank", "4", "--batch", "8", "--prompt-len", "48",
                      "--response-len", "16", "--warmup", "1", "--steps", "5", "--count-flops"],
                     [("tokens_per_s", "tokens_per_s", "tokens_per_s", "higher"),
                      ("peak_mem_bytes", "peak_mem_bytes", "peak_mem_bytes", "lower"),
                      ("flops_per_step", "flops_per_step", "flops_per_step", "lower"),
                      ("final_loss", "final_loss", "final_loss", "same")], repeats=1 if quick else 7)
          for name, peer in (("loreft", "peers/pyreft_loreft.py"), ("loreft_vs_lora", "peers/peft_lora.py"))),
        *([] if quick else smollm2_comparisons()),
    ]


def smollm2_comparisons() -> list[Comparison]:
    """The same rows on the real pretrained SmolLM2-135M-Instruct (Llama, 30 layers, width 576,
    vocabulary 49,152): one DII step at layer 16, and LoReFT r = 4 at layers 8, 16, 24."""
    model = ["--model", "smollm2"]
    return [
        Comparison("das_smollm2_layer16", "peers/pyvene_das.py", "ours_das.py",
                   [*model, "--layer", "16", "--batch", "32", "--seq", "16", "--k", "16", "--warmup", "2",
                    "--steps", "8"], THROUGHPUT_AND_MEMORY, repeats=3),
        *(Comparison(name, peer, "ours_loreft.py",
                     [*model, "--layers", "8,16,24", "--rank", "4", "--batch", "8", "--prompt-len", "48",
                      "--response-len", "16", "--warmup", "1", "--steps", "5", "--count-flops"],
                     [("tokens_per_s", "tokens_per_s", "tokens_per_s", "higher"),
                      ("peak_mem_bytes", "peak_mem_bytes", "peak_mem_bytes", "lower"),
                      ("flops_per_step", "flops_per_step", "flops_per_step", "lower")], repeats=3)
          for name, peer in (("loreft_smollm2", "peers/pyreft_loreft.py"),
                             ("loreft_vs_lora_smollm2", "peers/peft_lora.py"))),
    ]


def search_comparison(quick: bool) -> Comparison | None:
    """A whole search as users run it (bench/search_task.py): every layer at the last
    position, k = 16, batch 32, 5 epochs over 256 pairs, IIA on 256 held-out pairs. Ours is
    `AlignmentSearch.run()` timed whole; pyvene's side runs layer 6 whole, times 8 steps at
    layers 0 and 11, and extrapolates (bench/peers/pyvene_search.py says how)."""
    data = Path(tempfile.mkdtemp(prefix="dii-bench-search-"))
    args = ["--model", "tiny", "--n-train", "64", "--n-test", "64"] if quick else []
    proc = subprocess.run([str(PEERS_PY), str(BENCH / "search_data.py"), "--out", str(data), *args],
                          capture_output=True, text=True, timeout=900, cwd=BENCH.parent)
    if proc.returncode != 0:
        print("search_data.py failed:\n" + (proc.stdout + proc.stderr)[-2000:], flush=True)
        return None
    # Ours with the loss over the whole vocabulary here; the run with the loss over the
    # answer tokens (the default) follows against the same pyvene run (main()).
    return Comparison("search_e2e", "peers/pyvene_search.py", "ours_search.py",
                      ["--data", str(data), "--loss-over", "vocabulary",
                       *(["--layers", "0", "--time-layers", "1"] if quick else ["--layers", "6", "--time-layers", "0,11"])],
                      [("sweep_total_s", "total_s", "total_s", "lower"),
                       ("examples_per_s", "examples_per_s", "examples_per_s", "higher"),
                       ("peak_mem_bytes", "peak_mem_bytes", "peak_mem_bytes", "lower"),
                       ("IIA (mean over layers)", "iia_mean", "iia_mean", "same")], timeout_s=1200)


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


def rescore(metric: dict, ours: dict, c: Comparison) -> dict:
    """`metric` of a one-run comparison recomputed with another run of our side."""
    ours_key = next(o for label, _, o, _ in c.metrics if label == metric["metric"])
    o = ours.get(ours_key)
    return {**metric, "ours": o, "ratio": ratio(metric["peer"], o)}


def search_fields(row: dict) -> dict:
    """What the README's end-to-end line needs: per-layer IIA on the layers both sides ran."""
    peer, ours = row["peer"], row["ours"]
    if "error" in peer or "error" in ours:
        return {}
    ours_by_layer = dict(zip(ours["layers"], ours["iia_per_layer"]))
    return {"layers_compared": peer["layers"], "iia_pyvene": peer["iia_per_layer"],
            "iia_ours": [ours_by_layer[layer] for layer in peer["layers"]], "extrapolation": peer["extrapolation"],
            "pyvene_step_s": [[p["step_s_min"], p["step_s_median"], p["step_s_max"]] for p in peer["per_layer"]],
            "ours_timings": ours.get("timings"), "n_test": ours["n_test"], "n_train_kept": ours["n_train_kept"]}


def search_line(peer: dict, ours: dict) -> str:
    f = search_fields({"peer": peer, "ours": ours})
    gap = max(abs(a - b) for a, b in zip(f["iia_ours"], f["iia_pyvene"]))
    steps = "; ".join(f"L{layer}: {lo:.2f}/{med:.2f}/{hi:.2f} s" for layer, (lo, med, hi)
                      in zip(f["layers_compared"], f["pyvene_step_s"]))
    return (f"\nend-to-end search ({len(ours['layers'])} layers, k 16, batch 32, 5 epochs x {f['n_train_kept']} pairs, IIA on "
            f"{f['n_test']}): ours {ours['total_s']:.1f} s, pyvene {peer['total_s']:.1f} s "
            f"= {peer['total_s'] / ours['total_s']:.1f}x faster\n  pyvene: {f['extrapolation']}; step min/median/max "
            f"{steps}\n  IIA on layers {f['layers_compared']}: ours {[round(x, 3) for x in f['iia_ours']]}, pyvene "
            f"{[round(x, 3) for x in f['iia_pyvene']]} (largest gap {gap:.3f}, target 0.02); ours mean over all "
            f"layers {ours['iia_mean']:.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny model: checks the set runs, measures nothing useful")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch/OpenMP threads for every side (default: torch's, one per core); "
                         "1 is steadier when other processes share the CPUs")
    ap.add_argument("--only", default=None, help="comma-separated comparison names (and/or 'crosscheck')")
    ap.add_argument("--results", default=str(BENCH / "results"), help="where the JSON results go")
    args = ap.parse_args(argv)
    if not PEERS_PY.exists():
        print("bench/.venv-peers is missing: creating it (bench/setup_peers.sh, a few minutes) ...", flush=True)
        subprocess.run(["bash", str(BENCH / "setup_peers.sh")], check=True)
    only = set(args.only.split(",")) if args.only else None
    if args.threads:  # inherited by every side's process
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    results_dir = Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    prefix = "cpu_quick_" if args.quick else "cpu_"
    t0 = time.perf_counter()
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 2):
        print(f"warning: load average {load:.1f} on {os.cpu_count()} cores: other processes share the CPUs, "
              "so timings are unreliable (OpenMP threads waiting on each other); --threads 1 is steadier", flush=True)
    rows = []
    todo = comparisons(args.quick)
    if not only or "search_e2e" in only:
        print("making the end-to-end search's data ...", flush=True)
        search = search_comparison(args.quick)
        todo = ([search] if search else []) + todo
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
        if c.name == "search_e2e":  # the same search with the loss over the answer tokens, against the same pyvene run
            print("running search_e2e with loss_over = answers ...", flush=True)
            answers_args = [a if a != "vocabulary" else "answers" for a in c.args]  # not `args`: main's flags
            ours = run_side(str(PEERS_PY), c.ours_script, answers_args, c.timeout_s)
            answers_row = {**row, "name": "search_e2e_answers_loss", "ours": ours,
                           "metrics": [rescore(m, ours, c) for m in row["metrics"]]}
            write_json(results_dir / f"{prefix}search_e2e_answers_loss.json", answers_row)
            rows.append(answers_row)
    check = None
    if not only or "crosscheck" in only:
        print("running crosscheck ...", flush=True)
        proc = subprocess.run([str(PEERS_PY), str(BENCH / "crosscheck.py")], capture_output=True, text=True,
                              timeout=300, cwd=BENCH.parent)
        check = {"returncode": proc.returncode, "table": proc.stdout.strip().splitlines()[-6:],
                 "stderr_tail": proc.stderr[-2000:] if proc.returncode else ""}
    scaling = None
    if not only or "scaling" in only:
        print("running scaling (DAS examples/s by sequence length and width) ...", flush=True)
        import scaling as scaling_bench

        scaling = scaling_bench.run(args.quick, str(PEERS_PY), results_dir)
    summary = {"environment": environment(str(PEERS_PY)), "total_s": time.perf_counter() - t0,
               "date": time.strftime("%Y-%m-%d", time.gmtime()),
               "load_average_at_start": load, "threads": args.threads,
               "rows": [{"name": r["name"], "metrics": r["metrics"],
                         "errors": {s: r[s]["error"] for s in ("peer", "ours") if "error" in r[s]},
                         **({"search": search_fields(r)} if r["name"].startswith("search_e2e") else {})} for r in rows],
               "scaling": scaling,
               "crosscheck": check}
    summary["memory_above_peer"] = memory_above_peer(rows)
    write_json(results_dir / f"{prefix}summary.json", summary)
    print()
    print(table(rows))
    if check is not None:
        print("\n" + "\n".join(check["table"]))
    above = summary["memory_above_peer"]
    print(f"\npeak memory at or below the peer's on every row: {'yes' if not above else 'NO: ' + ', '.join(above)}")
    print(f"total {summary['total_s']:.0f} s; results in {results_dir}/{prefix}*.json")
    for r in rows:
        if r["name"] == "iia_zoo_task" and all(isinstance(r[s].get("iia"), float) for s in ("peer", "ours")):
            gap = abs(r["ours"]["iia"] - r["peer"]["iia"])
            print(f"IIA gap |ours - pyvene| = {gap:.3f} ({'within' if gap <= 0.02 else 'OUTSIDE'} the 0.02 target)")
        if r["name"].startswith("search_e2e") and "error" not in r["peer"] and "error" not in r["ours"]:
            print(f"\n[{r['name']}: loss over the {r['ours'].get('loss_over')}]", end="")
            print(search_line(r["peer"], r["ours"]))
    if scaling is not None:
        print("\nDAS examples/s by sequence length and width:")
        for p in scaling["points"]:
            print(f"  {p['model']:12s} {p['seq']:4d} tokens: ours {p['ours'].get('examples_per_s') or 0:8.1f}, "
                  f"pyvene {p['pyvene'].get('examples_per_s') or 0:7.2f} ({p['ratio'] or 0:.1f}x)")
        print(f"scaling plot: {scaling['plot']}")
    failed = any("error" in r[s] for r in rows for s in ("peer", "ours")) or (check is not None and check["returncode"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
