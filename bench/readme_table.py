"""Regenerates the README's CPU performance table from the committed summary
(bench/results/cpu_summary.json, written by `make bench`), so the figures there are the
measured ones. Rewrites the lines between the two markers in README.md.

    .venv/bin/python bench/readme_table.py          # after make bench
    .venv/bin/python bench/readme_table.py --check  # exit 1 if the README is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from driver import fmt, memory_above_peer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = ROOT / "bench" / "results" / "cpu_summary.json"
START, END = "<!-- cpu-table:start (bench/readme_table.py) -->", "<!-- cpu-table:end -->"

WORKLOADS = {
    "search_e2e": "Whole search as users run it: all 12 layers at the last position, k = 16, batch 32, "
                  "5 epochs over 256 pairs, IIA on 256 (setup, preparation, evaluation included); "
                  "our loss over the whole vocabulary (`loss_over = \"vocabulary\"`); pyvene's wall time "
                  "extrapolated from layer 6 run whole and 8 steps at layers 0 and 11 (bench/README.md)",
    "search_e2e_answers_loss": "the same search with our loss over the 8 answer tokens "
                               "(`loss_over = \"answers\"`, the default)",
    "das_layer6": "DAS step, batch 32 x 16 tokens, layer 6, k = 16",
    "das_sweep_all_layers": "DAS sweep over all 12 layers, last position, 3 steps each (setup included)",
    "loreft": "LoReFT rank 4, layers 2/4/6/8, f1+l1, batch 8 x (48 + 16) tokens, against pyreft",
    "loreft_vs_lora": "the same LoReFT, against peft's LoRA rank 4 on those layers' attention",
    "iia_zoo_task": "IIA task (zoo model, 150 steps of batch 64, same examples and order)",
    "das_smollm2_layer16": "SmolLM2-135M-Instruct (pretrained, 30 layers): DAS step, batch 32 x 16 tokens, "
                           "layer 16, k = 16",
    "loreft_smollm2": "SmolLM2-135M-Instruct: LoReFT rank 4, layers 8/16/24, f1+l1, batch 8 x (48 + 16) tokens, "
                      "against pyreft",
    "loreft_vs_lora_smollm2": "SmolLM2-135M-Instruct: the same LoReFT, against peft's LoRA rank 4 on q_proj, v_proj "
                              "of those layers",
}
UNITS = {"peak_mem_bytes": "peak memory", "sweep_total_s": "wall time", "train_s": "training time"}


def _ratio(m: dict) -> str:
    r = m.get("ratio")
    if r is None:
        return "-"
    if m["better"] == "lower" and m["metric"].endswith("_s"):
        text = f"{1 / r:.1f}x faster" if r > 0 else "-"
    else:
        text = f"{r:.2f}x"
    varied = m.get("peer_range") and m.get("ours_range") and (m["peer_range"][0] != m["peer_range"][1]
                                                              or m["ours_range"][0] != m["ours_range"][1])
    if m.get("runs", 1) > 1 and varied:
        lo = m["ours_range"][0] / m["peer_range"][1]
        hi = m["ours_range"][1] / m["peer_range"][0]
        text += f" (median of {m['runs']}; ratio range {lo:.2f}-{hi:.2f})"
    return text


def table(summary: dict) -> str:
    env = summary.get("environment", {})
    load = summary.get("load_average_at_start")
    lines = [f"Measured {summary.get('date', 'on the date of the summary')} on {env.get('threads', '?')} threads, "
             f"torch {env.get('torch', '?')}, transformers {env.get('transformers', '?')}, load average "
             f"{load:.2f} at the start{' (a busy machine: read the ratios, not the times)' if load and load > 1 else ''}.",
             "", "| workload (GPT-2-small shape, 124M, fp32, CPU, unless it names SmolLM2) | metric | peer | ours | ours / peer |",
             "|---|---|---|---|---|"]
    for row in summary["rows"]:
        label = WORKLOADS.get(row["name"], row["name"])
        for m in row["metrics"]:
            if m["better"] == "same" and "iia" not in m["metric"].lower():
                continue  # final losses: in the JSON, not a performance figure
            if m["metric"].startswith("IIA (mean") and row.get("search"):  # compare on the layers both ran
                f = row["search"]
                lines.append(f"| {label} | IIA at layer(s) {f['layers_compared']} (n = {f['n_test']}) | "
                             f"{', '.join(f'{x:.3f}' for x in f['iia_pyvene'])} | "
                             f"{', '.join(f'{x:.3f}' for x in f['iia_ours'])} (mean of all layers {m['ours']:.3f}) | |")
                label = "same"
                continue
            metric = UNITS.get(m["metric"], m["metric"].replace("_", " "))
            lines.append(f"| {label} | {metric} | {fmt(m['metric'], m['peer'])} | {fmt(m['metric'], m['ours'])} "
                         f"| {_ratio(m) if m['better'] != 'same' else ''} |")
            label = "same"
        if row.get("errors"):
            lines.append(f"| {WORKLOADS.get(row['name'], row['name'])} | failed | {row['errors']} | | |")
    above = memory_above_peer(summary["rows"])
    lines += ["", "Peak memory at or below the peer's on every row: "
              + ("yes." if not above else f"no, above on {', '.join(above)}.")]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    summary = json.loads(SUMMARY.read_text())
    readme = (ROOT / "README.md").read_text()
    if START not in readme or END not in readme:
        print(f"README.md has no {START} ... {END} block", file=sys.stderr)
        return 1
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{table(summary)}\n{END}{tail}"
    if args.check:
        return 0 if new == readme else 1
    (ROOT / "README.md").write_text(new)
    print(table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
