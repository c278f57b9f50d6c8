"""The `dii` command line. Each subcommand is one function registered with @command; to add
one (e.g. `dii finetune`), write one decorated function:

    @command("finetune", "LoReFT finetuning from a learned subspace",
             arg("config", help="a finetune .toml config"))
    def finetune(args) -> int: ...

Errors a user can cause (WorkbenchError) print one line to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from causal.errors import WorkbenchError
from causal.io import write_dir_atomic
from experiments.errors import ConfigError

# name -> (help, [(args, kwargs) for add_argument], function(args) -> exit code)
COMMANDS: dict[str, tuple[str, list[tuple[tuple, dict]], Callable[[argparse.Namespace], int]]] = {}


def arg(*args, **kwargs) -> tuple[tuple, dict]:
    return args, kwargs


def command(name: str, help: str, *arguments: tuple[tuple, dict]):
    def register(fn):
        COMMANDS[name] = (help, list(arguments), fn)
        return fn

    return register


# The same three flags on every subcommand that writes a run.
RUNS_DIR = arg("--runs-dir", default=None, help="where runs live (default: $DII_RUNS or ./runs)")
NAME = arg("--name", default=None, help="run name under --runs-dir (default: the config's name, else its hash)")
OUT = arg("--out", default=None, help="the run directory itself (overrides --runs-dir and --name)")


def run_dir_of(args, default_name: str) -> Path:
    """--out, else --runs-dir / (--name or the config's own name)."""
    from experiments.runs import runs_root

    if getattr(args, "out", None):
        return Path(args.out)
    name = getattr(args, "name", None) or default_name
    if not name or not all(ch.isalnum() or ch in "-_." for ch in name) or name.startswith("."):
        raise ConfigError(f"run name {name!r}: use letters, digits, '-', '_' or '.' (no path separators)")
    return runs_root(getattr(args, "runs_dir", None)) / name


# ------------------------------------------------------------------ search
@command("search", "run a Distributed Alignment Search from a TOML config",
         arg("config", help="a search config, e.g. experiments/configs/hierarchical_equality.toml"),
         arg("--resume", action="store_true", help="continue an interrupted run, skipping finished cells"),
         RUNS_DIR, NAME, OUT)
def search(args) -> int:
    from tqdm.auto import tqdm

    from experiments.config import load_config
    from experiments.distributed import run_search_from_config

    cfg = load_config(args.config)
    target = run_dir_of(args, cfg.run_name)
    if target.name != cfg.run_name:
        cfg.name = target.name
    bars: dict[str, tqdm] = {}
    stepping: dict[str, str] = {}  # the cell whose steps the second bar shows

    def progress(p) -> None:
        # One bar for the sweep (cells), one for the steps of the cell in training.
        if "cells" not in bars:
            bars["cells"] = tqdm(total=p.n_cells, desc="cells", position=0, disable=not p.is_main)
        if p.event == "step":
            bar = bars.get("steps")
            if bar is None or stepping.get("cell") != p.cell:
                if bar is not None:
                    bar.close()
                stepping["cell"] = p.cell
                bar = bars["steps"] = tqdm(total=p.n_steps, desc=p.cell, position=1, leave=False,
                                           disable=not p.is_main)
            bar.n = p.step
            bar.set_postfix(loss=f"{p.loss:.3f}", refresh=False)
            bar.refresh()
        elif p.event in ("cell_done", "cell_skipped"):
            bars["cells"].update(1)
            bars["cells"].set_postfix_str(p.cell)

    try:
        run = run_search_from_config(cfg, runs_dir=target.parent, resume=args.resume, progress=progress)
    finally:
        for b in bars.values():
            b.close()
    if run is not None:  # None on ranks other than 0
        print(f"run {run.name!r} written to {run.path}")
        print(format_best(run))
    return 0


# ------------------------------------------------------------------ runs / show / export
@command("runs", "list the runs in the run store", RUNS_DIR)
def runs(args) -> int:
    from experiments.runs import list_runs, runs_root

    rows = list_runs(args.runs_dir)
    if not rows:
        print(f"no runs in {runs_root(args.runs_dir)}")
        return 0
    table = [[r["name"], r["task"] or "", r["method"] or "", r["status"],
              f"{r['cells_done']}/{r['cells_total'] if r['cells_total'] is not None else '?'}", r["created"][:19]]
             for r in rows]
    print(format_table(["run", "task", "method", "status", "cells", "created"], table))
    for r in rows:  # why a run cannot be read, so it can be fixed or deleted
        if r["status"] == "unreadable":
            print(f"{r['name']}: unreadable: {r['reason']} ({r['path']})")
    return 0


@command("show", "best sites per variable, with the controls beside them",
         arg("run", help="a run name (or a run directory)"), RUNS_DIR,
         arg("--all", action="store_true", help="print every row of the results table"))
def show(args) -> int:
    from experiments.runs import load_run

    run = load_run(args.run, args.runs_dir)
    m = run.manifest
    cfg = run.config
    print(f"run {run.name}: task {cfg.get('task')}, model {cfg.get('model')}, method {cfg.get('method')}, "
          f"{'seeds ' + str(cfg['seeds']) if cfg.get('seeds') else 'seed ' + str(cfg.get('seed'))}, "
          f"status {m.get('status', 'unknown')}")
    if args.all:
        cols = ["site", "variable", "method", "iia", "k", "n_test"]
        print(format_table(cols, [[_fmt(r.get(c)) for c in cols] for r in run.rows]))
    else:
        print(format_best(run))
    return 0


@command("export", "copy a learned Subspace artifact out of a run (with its model card), or push it to the Hub",
         arg("run", help="a run name (or a run directory)"),
         arg("--site", default=None, help="site key, e.g. L0.block_output.last (see `dii show RUN --all`)"),
         arg("--variable", default=None, help="the variable name, e.g. V1"),
         arg("--format", default="dii", choices=["dii", "mib"],
             help="dii: one subspace (--site, --variable); mib: the run as an MIB causal-variable-track submission"),
         arg("--out", default=None, help="directory to write config.json + subspace.safetensors + README.md into"),
         arg("--push-to-hub", metavar="REPO", default=None,
             help="also upload it to this Hub model repo (user/name; uses your huggingface_hub login)"),
         RUNS_DIR)
def export(args) -> int:
    from experiments.runs import load_run
    from interventions import InterventionError, Subspace
    from interventions.hub import iia_text

    if not args.out and not args.push_to_hub:
        raise ConfigError("give --out DIR, --push-to-hub REPO, or both")
    if args.format == "mib":
        return _export_mib(args)
    if not args.site or not args.variable:
        raise ConfigError("give --site and --variable (see `dii show RUN --all`), or --format mib for the whole run")
    run = load_run(args.run, args.runs_dir)
    src = run.subspace_path(args.site, args.variable)
    try:
        subspace = Subspace.load(src)  # only a whole, checked artifact travels
    except InterventionError as e:
        raise ConfigError(f"the run's subspace for {args.site} / {args.variable} is not a valid artifact, so it was "
                          f"not exported: {e}") from None
    out = _new_out_dir(args.out) if args.out else None
    main = run.config.get("method", "das")
    row = next((r for r in run.rows if r.get("site") == args.site and r.get("variable") == args.variable
                and r.get("method") == main), {})
    card = {"iia_text": iia_text(row.get("iia", subspace.iia), row.get("iia_low"), row.get("iia_high"),
                                 row.get("n_test"), row.get("floor")),
            "training_config": run.config}
    if out is not None:
        write_dir_atomic(out, lambda tmp: subspace.save_pretrained(tmp, card))
        print(f"exported {args.site} / {args.variable} to {out} (with its model card, README.md)")
    if args.push_to_hub:
        url = subspace.push_to_hub(args.push_to_hub, card)
        print(f"pushed {args.site} / {args.variable} to {args.push_to_hub}: {url}")
    return 0


def _new_out_dir(text: str) -> Path:
    """--out of `dii export`: a directory to create (or an empty one) in a folder that exists."""
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; give a directory to create (or an empty one)")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {str(out)!r} exists and is not empty; choose a new directory")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {str(out)!r}: its parent folder {str(out.parent)!r} does not exist; create it first")
    return out


def _export_mib(args) -> int:
    import transformers

    from experiments.mib_export import export_mib
    from experiments.models import resolve_model_path
    from experiments.runs import load_run

    if args.push_to_hub or not args.out:
        raise ConfigError("--format mib writes a folder: give --out DIR (the track takes a folder, not a Hub push)")
    out = _new_out_dir(args.out)
    run = load_run(args.run, args.runs_dir)
    cfg = run.config
    from causal.tasks import resolve_task

    task = resolve_task(cfg["task"], options=cfg.get("task_options"))
    path = resolve_model_path(cfg["model"], cfg.get("model_seed", 0), task.vocabulary, task)
    config = transformers.AutoConfig.from_pretrained(path)
    model_class = (getattr(config, "architectures", None) or [type(config).__name__])[0]
    n_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    folders = export_mib(run, out, model_class, int(n_layers))
    print(f"wrote the MIB submission folders {[f.name for f in folders]} to {out}")
    return 0


@command("methods", "list the registered alignment methods and controls (plugins from $DII_PLUGINS too)")
def methods(args) -> int:
    from experiments.methods import describe_methods

    rows = [[m["name"], m["role"], "yes" if m["trains"] else "no", m["split"], m["summary"]] for m in describe_methods()]
    print(format_table(["method", "role", "trains", "split", "what it is"], rows))
    return 0


# ------------------------------------------------------------------ finetune / compare (logic in their own files)
@command("finetune", "LoReFT/DiReFT (or peft, full) finetuning from a TOML config",
         arg("config", help="a finetune config, e.g. experiments/configs/finetune_price_tagging_shift.toml"),
         RUNS_DIR, NAME, OUT)
def finetune(args) -> int:
    from experiments.finetune import cli_finetune

    return cli_finetune(args)


@command("compare", "ReFT vs PEFT: train every method with the same data, budget and seeds; one table",
         arg("config", help="a compare config, e.g. experiments/configs/compare_price_tagging.toml"), RUNS_DIR, NAME, OUT)
def compare(args) -> int:
    from experiments.compare import cli_compare

    return cli_compare(args)


# ------------------------------------------------------------------ formatting
def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def format_table(header: list[str], rows: list[list]) -> str:
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def format_best(run) -> str:
    """Per variable: the main method's best site, its IIA with the 95% interval, n and the
    floor, and every control at that site with the paired (exact McNemar) verdict."""
    from experiments.report import best_site_summary, fmt_interval, fmt_seeds, fmt_verdict

    main = run.config.get("method", "das")
    summary = best_site_summary(run.rows, main)
    if not summary:
        return "(no finished cells yet)"
    controls = list(dict.fromkeys(m for s in summary for m in s["controls"]))
    several = any(s.get("sd") is not None for s in summary)
    header = ["variable", "best site", f"{main} IIA{' (mean ± sd over seeds)' if several else ''} [95% CI]", "n",
              "floor", *[f"vs {c}" for c in controls]]
    table, notes = [], []
    for s in summary:
        floor = "-" if s["floor"] is None else f"{s['floor']:.3f} ({s['floor_rule']})" + (
            "" if s["above_floor"] else " OVERLAPS")
        table.append([s["variable"], s["site"], fmt_interval(s), _fmt(s["n_test"]), floor,
                      *[fmt_verdict(s["controls"][c], main) if c in s["controls"] else "-" for c in controls]])
        if s.get("warning"):
            notes.append(f"{s['variable']}: {s['warning']}")
        if fmt_seeds(s):
            notes.append(f"{s['variable']} at {s['site']}, each seed: {fmt_seeds(s)}")
        if s["above_floor"] is False:
            notes.append(f"{s['variable']}: the interval overlaps the floor ({s['floor_rule']}); "
                         "this IIA is no better than a trivial rule")
    if run.manifest.get("contrastive", run.config.get("contrastive")) is False:
        notes.append("counterfactuals are not contrastive: rules that read only the base can score above chance; "
                     "the floor column says how far")
    return format_table(header, table) + "".join(f"\nnote: {n}" for n in notes)


# ------------------------------------------------------------------ entry point
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dii", description="causal-abstraction workbench: DAS search, runs, LoReFT")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (help_, arguments, fn) in COMMANDS.items():
        epilog = None
        if name == "search":
            from experiments.config import fields_help

            epilog = "config fields (TOML keys; AlignmentSearch takes the same keywords):\n" + fields_help()
        p = sub.add_parser(name, help=help_, description=help_, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        for a, kw in arguments:
            p.add_argument(*a, **kw)
        p.set_defaults(func=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except WorkbenchError as e:
        print(f"dii {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dii {args.command}: interrupted; finished cells are saved (rerun with --resume)", file=sys.stderr)
        return 130
    finally:
        from experiments.distributed import destroy_process_group

        destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
