"""`dii search`, `dii runs`, `dii show`, `dii export` and `dii methods`."""

from __future__ import annotations

from pathlib import Path

from causal.io import write_dir_atomic
from experiments.cli.commands import NAME, OUT, RUNS_DIR, arg, command, format_table, target_of
from experiments.errors import ConfigError


# ------------------------------------------------------------------ search
def search_epilog() -> str:
    from experiments.search import fields_help
    from experiments.search.methods import describe_methods

    options = "\n".join(f"  [method_options.{m['name']}]  {m['options']}" for m in describe_methods() if m["options"])
    return ("config fields (TOML keys; AlignmentSearch takes the same keywords):\n" + fields_help()
            + ("\n\nmethod options (each method's own settings):\n" + options if options else ""))


@command("search", "run a Distributed Alignment Search from a TOML config",
         arg("config", help="a search config, e.g. experiments/configs/hierarchical_equality.toml"),
         arg("--resume", action="store_true", help="continue an interrupted run, skipping finished cells"),
         RUNS_DIR, NAME, OUT, epilog=search_epilog)
def search(args) -> int:
    from tqdm.auto import tqdm

    from experiments.search import load_config
    from experiments.search.sharding import run_search_from_config

    cfg = load_config(args.config)
    target = target_of(args, cfg.run_name)
    if target.name != cfg.run_name:
        cfg.name = target.name
    if args.resume and not (target / "manifest.json").is_file():
        from experiments.runs import list_runs

        names = [r["name"] for r in list_runs(target.parent, kind="search")]
        raise ConfigError(f"--resume: there is no run {target.name!r} in {target.parent} to resume (search runs there: "
                          f"{names or 'none'}); check the name, or drop --resume to start it")
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
        elif p.event == "note" and p.is_main:
            tqdm.write(f"note: {p.message}")

    try:
        run = run_search_from_config(cfg, runs_dir=target.parent, resume=args.resume, progress=progress)
    finally:
        for b in bars.values():
            b.close()
    if run is not None:  # None on ranks other than 0
        print(f"run {run.name!r} written to {run.path}")
        print(format_best(run))
    return 0


@command("plan", "what a search config will run, and how long it should take here, before it runs",
         arg("config", help="a search config"),
         arg("--cells", action="store_true", help="one line per cell"))
def plan(args) -> int:
    from experiments.search import AlignmentSearch, load_config

    p = AlignmentSearch.from_config(load_config(args.config)).plan()
    d = p.to_dict()
    print(f"{d['n_cells']} cells over {len({c.site for c in p.cells})} sites; {d['examples']:,} counterfactual examples "
          f"({d['distinct_inputs']:,} distinct inputs; {d['kept_share']:.0%} kept where the model is right)")
    print(f"passes: {d['forward_backward']:,} training steps (a forward and a backward each), {d['forwards']:,} "
          "evaluation forwards")
    print(f"estimate on this machine: {d['estimate_s']:,.0f} s ({d['setup_s']:,.0f} s loading, generating and "
          f"preparing), peak memory about {d['estimate_peak_mb']:,.0f} MB (calibrated in {d['calibration_s']:.1f} s)")
    if args.cells:
        print(format_table(["cell", "steps", "examples", "estimate s"],
                           [[c.cell, c.steps, c.examples, f"{c.seconds:.1f}"] for c in p.cells]))
    for note in p.notes:
        print(f"note: {note}")
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

    from experiments.export import export_mib
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
    from experiments.search.methods import describe_methods

    rows = [[m["name"], m["role"], "yes" if m["trains"] else "no", "yes" if m["uses_k"] else "no", m["split"],
             m["summary"]] for m in describe_methods()]
    print(format_table(["method", "role", "trains", "uses k", "split", "what it is"], rows))
    options = [(m["name"], m["options"]) for m in describe_methods() if m["options"]]
    if options:
        print("\nmethod options (a search config's [method_options.<method>] table):")
        for name, text in options:
            print(f"  {name}: {text}")
    return 0


# ------------------------------------------------------------------ formatting
def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def format_best(run) -> str:
    """Per variable: the main method's best site, its IIA with the 95% interval, n and the
    floor, and every control at that site with the paired (exact McNemar) verdict."""
    from experiments.search.report import best_site_summary, fmt_interval, fmt_seeds, fmt_verdict

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
        flag = {"at floor": " OVERLAPS", "uninformative": " UNINFORMATIVE"}.get(s["floor_verdict"], "")
        floor = "-" if s["floor"] is None else f"{s['floor']:.3f} ({s['floor_rule']}){flag}"
        table.append([s["variable"], s["site"], fmt_interval(s), _fmt(s["n_test"]), floor,
                      *[fmt_verdict(s["controls"][c], main) if c in s["controls"] else "-" for c in controls]])
        if s.get("warning"):
            notes.append(f"{s['variable']}: {s['warning']}")
        if fmt_seeds(s):
            notes.append(f"{s['variable']} at {s['site']}, each seed: {fmt_seeds(s)}")
        if s["floor_note"]:
            notes.append(f"{s['variable']}: {s['floor_note']}")
    if run.manifest.get("contrastive", run.config.get("contrastive")) is False:
        notes.append("counterfactuals are not contrastive: rules that read only the base can score above chance; "
                     "the floor column says how far")
    recipe = run.manifest.get("recipe")
    if recipe:  # which recipe trained the cells (the defaults, or the config's)
        budget = f"{recipe['steps']} steps" if recipe.get("steps") else f"{recipe.get('epochs')} epochs"
        ks = ", ".join(f"{v} {k}" for v, k in recipe["k"].items())
        notes.append(f"recipe: {recipe['k_rule']} ({ks}); {budget}, batch {recipe['batch_size']}, lr {recipe['lr']} "
                     f"({recipe['lr_schedule']}), loss over the {recipe['loss_over']}")
    return format_table(header, table) + "".join(f"\nnote: {n}" for n in notes)
