"""Markdown tables of a finished search run, as the README shows them: for each variable,
layers x positions, the main method's IIA with its 95% interval, then each control's IIA,
and the floor of that cell's test set; a cell whose interval reaches its floor is marked
with a dagger.

    .venv/bin/python scripts/iia_tables.py RUN [--runs-dir DIR] [--controls random_rotation untrained_model]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cell_text(main: dict | None, controls: list[dict | None]) -> str:
    if main is None or main.get("iia") is None:
        return "-"
    text = f"{main['iia']:.2f} [{main['iia_low']:.2f}, {main['iia_high']:.2f}]"
    if not main.get("above_floor", True):
        text += " †"
    for c in controls:
        text += " / " + ("-" if c is None or c.get("iia") is None else f"{c['iia']:.2f}")
    return text + f" (floor {main['floor']:.2f})"


def tables(run, controls: list[str]) -> str:
    main = run.config.get("method", "das")
    out = []
    for var in run.variables():
        rows = run.rows_for(var, main)
        if not rows:
            continue
        layers = sorted({r["layer"] for r in rows})
        positions = list(dict.fromkeys(str(r["position"] if r["position"] is not None else "vector") for r in rows))
        at = {(r["layer"], str(r["position"] if r["position"] is not None else "vector"), r["method"]): r
              for r in run.rows if r["variable"] == var}
        head = f"| {var} | " + " | ".join(positions) + " |"
        out += [head, "|---" * (len(positions) + 1) + "|"]
        for layer in layers:
            cells = [cell_text(at.get((layer, p, main)), [at.get((layer, p, c)) for c in controls]) for p in positions]
            out.append(f"| layer {layer} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def per_seed_table(run, variable: str, controls: list[str]) -> str:
    """Rows: seeds (and their mean); columns: layers, the main method's IIA [95% CI] with
    each control's IIA after a slash; the floor of the test set in brackets."""
    from experiments.search.report import pooled

    main = run.config.get("method", "das")
    rows = [r for r in run.rows if r["variable"] == variable]
    layers = sorted({r["layer"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    at = {}
    for r in rows:
        at.setdefault((r["seed"], r["layer"], r["method"]), r)
    out = ["| seed | " + " | ".join(f"layer {layer}" for layer in layers) + " |", "|---" * (len(layers) + 1) + "|"]
    for seed in seeds:
        cells = [cell_text(at.get((seed, layer, main)), [at.get((seed, layer, c)) for c in controls]) for layer in layers]
        out.append(f"| {seed} | " + " | ".join(cells) + " |")
    means = []
    for layer in layers:
        p = pooled([at[(s, layer, main)] for s in seeds if (s, layer, main) in at])
        means.append(f"**{p['iia']:.3f}** ± {p['sd']:.3f} [{p['iia_low']:.2f}, {p['iia_high']:.2f}] (floor {p['floor']:.2f})"
                     if p.get("sd") is not None else "-")
    out.append("| mean ± sd (pooled CI) | " + " | ".join(means) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--runs-dir", default=None)
    ap.add_argument("--controls", nargs="*", default=["random_rotation", "untrained_model"])
    ap.add_argument("--per-seed", metavar="VARIABLE", default=None, help="one row per seed for this variable")
    args = ap.parse_args(argv)
    from experiments.runs import load_run

    run = load_run(args.run, args.runs_dir)
    controls = [c for c in args.controls if c in run.methods()]
    print(per_seed_table(run, args.per_seed, controls) if args.per_seed else tables(run, controls))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
