"""README's "Plans and screening" table: for each search config, the plan's estimate against the
time the full grid took, and a screened search (`screen_top`) against the full grid: both
best sites with their IIA intervals, whether the intervals overlap, and the screened run's
share of the full run's wall time.

    .venv/bin/python scripts/plan_and_screening.py experiments/configs/hierarchical_equality.toml \
        experiments/configs/hierarchical_equality_tokens.toml experiments/configs/smollm2_ioi_position.toml \
        --runs-dir runs/plan-and-screening --screen-top 3

A finished run already in --runs-dir (named after the config, and <name>-screened) is read,
not run again, so a long full grid made by `dii search` counts as it is.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from experiments.cli import main as dii
from experiments.search import load_config


def wall_seconds(manifest: dict) -> float:
    started, finished = (datetime.fromisoformat(manifest[k]) for k in ("started", "finished"))
    return (finished - started).total_seconds()


def ensure_run(config_path: Path, runs: Path, name: str, extra: dict) -> dict:
    """The run's manifest and rows, running it first unless it finished before."""
    run = runs / name
    manifest_path = run / "manifest.json"
    if not (manifest_path.is_file() and json.loads(manifest_path.read_text()).get("status") == "finished"):
        config = load_config(config_path).replace(name=name, **extra)
        toml = runs / f"{name}.toml"
        runs.mkdir(parents=True, exist_ok=True)
        toml.write_text(config.to_toml())
        if dii(["search", str(toml), "--runs-dir", str(runs)]) != 0:
            raise SystemExit(f"dii search {toml} failed")
    return {"manifest": json.loads(manifest_path.read_text()), "rows": json.loads((run / "results.json").read_text())}


def best(rows: list[dict], variable: str) -> dict:
    return max((r for r in rows if r["method"] == "das" and r["variable"] == variable and r.get("iia") is not None),
               key=lambda r: r["iia"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--screen-top", type=float, default=3, help="sites kept per variable (or a share < 1)")
    parser.add_argument("--screen-steps", type=int, default=None,
                        help="screening steps per site (default: the search's, 20); fewer where full cells are short")
    args = parser.parse_args()
    top = int(args.screen_top) if args.screen_top >= 1 else args.screen_top
    screening = {"screen_top": top, **({"screen_steps": args.screen_steps} if args.screen_steps else {})}
    runs = Path(args.runs_dir)
    lines = ["| config | cells | plan | actual | plan / actual | full best (IIA [95% CI]) | screened best "
             f"(top {top}) | overlap | screened time |", "|---|---|---|---|---|---|---|---|---|"]
    for path in map(Path, args.configs):
        name = load_config(path).run_name
        full = ensure_run(path, runs, name, {})
        screened = ensure_run(path, runs, f"{name}-screened", screening)
        plan, actual = full["manifest"]["plan"]["estimate_s"], wall_seconds(full["manifest"])
        for variable in full["manifest"]["variables"]:
            f, s = best(full["rows"], variable), best(screened["rows"], variable)
            overlap = f["iia_low"] <= s["iia_high"] and s["iia_low"] <= f["iia_high"]
            share = wall_seconds(screened["manifest"]) / actual
            lines.append(f"| {path.stem} ({variable}) | {full['manifest']['n_cells']} | {plan:.0f} s | {actual:.0f} s | "
                         f"{plan / actual:.2f} | {f['site']} {f['iia']:.2f} [{f['iia_low']:.2f}, {f['iia_high']:.2f}] | "
                         f"{s['site']} {s['iia']:.2f} [{s['iia_low']:.2f}, {s['iia_high']:.2f}] | "
                         f"{'yes' if overlap else 'NO'} | {share:.2f} of full |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
