"""ReFT versus PEFT on the user's own model and data: every method trains with the same data,
step budget, evaluation and seeds; one table comes out.

Config (TOML):
    [compare]
    name = "compare-price-tagging"
    methods = ["loreft", "direft", "lora", "prefix_tuning", "prompt_tuning", "full"]
    seeds = [0, 1, 2]

    [finetune]            # shared by every method (a FinetuneConfig without 'method')
    model = "zoo:price_tagging"
    task = "price_tagging"
    steps = 100
    ...

    [overrides.full]      # optional per-method settings that do not change data, budget or evaluation
    lr = 1e-3

Written to the run store, runs/<name>/:
    manifest.json   kind "compare", the config, status
    compare.json    one row per method x seed, and the per-method summary (mean, std over seeds)
    compare.csv     the summary table
    curves.json     method -> seed -> {"loss": [...], "eval": [...]}
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from experiments.errors import ConfigError
from experiments.finetune import METHODS, FinetuneConfig, finetune, read_toml

# What a per-method override may not touch: the comparison's data, budget, evaluation and seed.
FIXED_FIELDS = ("model", "task", "variant", "data", "steps", "epochs", "batch_size", "grad_accum", "n_train",
                "n_eval", "eval_fraction", "eval_every", "seed", "max_length", "model_seed", "method", "name")
SUMMARY_COLUMNS = ["method", "trainable_params", "trainable_percent", "accuracy_mean", "accuracy_std",
                   "eval_loss_mean", "eval_loss_std", "tokens_per_second", "peak_memory_mb", "wall_seconds",
                   "n_seeds", "params_source"]


@dataclass
class CompareConfig:
    finetune: dict
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    seeds: list[int] = field(default_factory=lambda: [0])
    overrides: dict[str, dict] = field(default_factory=dict)
    name: str | None = None

    def __post_init__(self):
        from causal.tasks import Task, task_spec_of

        if isinstance(self.finetune, dict) and isinstance(self.finetune.get("task"), Task):
            self.finetune = {**self.finetune, "task": task_spec_of(self.finetune["task"])}
        if not isinstance(self.methods, list) or not self.methods:
            raise ConfigError(f"compare config field 'methods': list at least one of {list(METHODS)}")
        for m in self.methods:
            if m not in METHODS:
                raise ConfigError(f"compare config field 'methods': unknown method {m!r}; allowed values: {list(METHODS)}")
        if self.name is not None and not (isinstance(self.name, str) and self.name and not self.name.startswith(".")
                                          and all(ch.isalnum() or ch in "-_." for ch in self.name)):
            raise ConfigError(f"compare config field 'name': got {self.name!r}; use letters, digits, '-', '_' or '.' "
                              "(no path separators: a run stays inside --runs-dir)")
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError("compare config field 'methods': a method is listed twice; list each once")
        if not isinstance(self.seeds, list) or not self.seeds or not all(
                isinstance(s, int) and not isinstance(s, bool) for s in self.seeds):
            raise ConfigError("compare config field 'seeds': list at least one integer seed, e.g. [0, 1, 2]")
        if not isinstance(self.finetune, dict):
            raise ConfigError("compare config: put the shared finetune settings in a [finetune] table")
        if "method" in self.finetune:
            raise ConfigError("compare config: [finetune] must not set 'method'; list the methods in [compare] methods")
        for m, o in self.overrides.items():
            if m not in self.methods:
                raise ConfigError(f"compare config: [overrides.{m}] names a method that is not compared; "
                                  f"methods: {self.methods}")
            bad = sorted(set(o) & set(FIXED_FIELDS))
            if bad:
                raise ConfigError(f"compare config: [overrides.{m}] changes {bad}; every method shares the data, "
                                  f"budget, evaluation and seed, so set these in [finetune]")
        for m in self.methods:  # validates every method's config now, not halfway through the run
            self.config_for(m, self.seeds[0])

    def config_for(self, method: str, seed: int) -> FinetuneConfig:
        d = {**self.finetune, **self.overrides.get(method, {}), "method": method, "seed": seed}
        return FinetuneConfig.from_dict(d)

    def hash(self) -> str:
        from causal.io import json_hash

        return json_hash({**self.to_dict(), "name": None})

    @property
    def run_name(self) -> str:
        return self.name or f"compare-{self.config_for(self.methods[0], self.seeds[0]).hash()}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_compare_config(path: str | Path) -> CompareConfig:
    data = read_toml(path, "compare")
    head = data.get("compare", {})
    if not isinstance(head, dict):
        raise ConfigError("compare config: [compare] must be a table with methods, seeds and name")
    unknown = sorted(set(data) - {"compare", "finetune", "overrides"})
    if unknown:
        raise ConfigError(f"compare config: unknown table(s) {unknown}; allowed: [compare], [finetune], [overrides.<method>]")
    unknown = sorted(set(head) - {"methods", "seeds", "name"})
    if unknown:
        raise ConfigError(f"compare config: unknown [compare] field(s) {unknown}; allowed: methods, seeds, name")
    finetune_table = dict(data.get("finetune", {}))
    for key in ("data", "init_from"):  # resolve relative paths like read_toml does for flat files
        v = finetune_table.get(key)
        if isinstance(v, str) and not Path(v).is_absolute() and not Path(v).exists() and (Path(path).parent / v).exists():
            finetune_table[key] = str(Path(path).parent / v)
    return CompareConfig(finetune=finetune_table, methods=head.get("methods", list(METHODS)),
                         seeds=head.get("seeds", [0]), overrides=data.get("overrides", {}), name=head.get("name"))


@dataclass
class CompareResult:
    name: str
    rows: list[dict]  # one per method x seed
    summary: list[dict]  # one per method
    curves: dict[str, dict[str, dict]]
    path: Path | None = None


def compare(config: CompareConfig, runs_dir: str | Path | None = None, out_dir: str | Path | None = None,
            progress: Callable[[str, int, int, int, float], None] | None = None) -> CompareResult:
    """Train every method for every seed (a fresh model each time: peft and full change it).
    `progress(method, seed, step, n_steps, loss)`. Writes runs/<name>/ (or out_dir) after
    every finished method x seed, so a long comparison can be watched while it runs."""
    from experiments.runs import RunStore, run_versions, runs_root

    out = Path(out_dir) if out_dir is not None else runs_root(runs_dir) / config.run_name
    store = RunStore(out)
    store.start({"config": {**config.finetune, "method": "compare", "methods": config.methods, "seeds": config.seeds},
                 "config_hash": config.hash(), "compare_config": config.to_dict(), "versions": run_versions(),
                 "n_cells": len(config.methods) * len(config.seeds)}, kind="compare")
    rows, curves = [], {}
    try:
        for method in config.methods:
            for seed in config.seeds:
                cfg = config.config_for(method, seed)
                cb = None if progress is None else (lambda s, n, l, m=method, sd=seed: progress(m, sd, s, n, l))
                r = finetune(cfg, progress=cb)
                rows.append({"method": method, "seed": seed, "trainable_params": r.trainable_params,
                             "own_count": r.own_count, "params_source": r.own_count_source,
                             "total_params": r.total_params, "trainable_percent": r.trainable_percent,
                             "accuracy": r.final_accuracy, "eval_loss": r.final_loss,
                             "token_accuracy": r.final_token_accuracy, "tokens_per_second": r.tokens_per_second,
                             "peak_memory_mb": r.peak_memory_mb, "wall_seconds": r.wall_seconds, "steps": r.steps,
                             "final_train_loss": r.loss_curve[-1] if r.loss_curve else None})
                curves.setdefault(method, {})[str(seed)] = {"loss": r.loss_curve, "eval": r.eval_curve}
                summary = _write(out, rows, curves)
    except BaseException as e:
        store.finish_raised(e)
        raise
    store.finish("finished")
    return CompareResult(out.name, rows, summary, curves, out)


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == method]
        acc = [r["accuracy"] for r in rs]
        loss = [r["eval_loss"] for r in rs]
        out.append({
            "method": method, "trainable_params": rs[0]["trainable_params"],
            "trainable_percent": rs[0]["trainable_percent"],
            # No spread from one seed: None (an empty cell), not a 0 that reads as "no variation".
            "accuracy_mean": statistics.fmean(acc), "accuracy_std": statistics.pstdev(acc) if len(acc) > 1 else None,
            "eval_loss_mean": statistics.fmean(loss), "eval_loss_std": statistics.pstdev(loss) if len(loss) > 1 else None,
            "tokens_per_second": statistics.fmean(r["tokens_per_second"] for r in rs),
            "peak_memory_mb": max(r["peak_memory_mb"] for r in rs),
            "wall_seconds": statistics.fmean(r["wall_seconds"] for r in rs),
            "n_seeds": len(rs), "params_source": rs[0]["params_source"]})
    return out


def _write(out: Path, rows, curves) -> list[dict]:
    from experiments.runs import write_json_atomic, write_text_atomic

    summary = summarize(rows)
    write_json_atomic(out / "compare.json", {"rows": rows, "summary": summary})
    write_text_atomic(out / "compare.csv", _csv(summary))
    write_json_atomic(out / "curves.json", curves)
    return summary


def _csv(summary: list[dict]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in summary:
        w.writerow(r)
    return buf.getvalue()


def format_summary(summary: list[dict]) -> str:
    header = ["method", "params", "% model", "accuracy", "eval loss", "tokens/s", "peak MB", "wall s", "seeds"]
    rows = [[r["method"], f"{r['trainable_params']:,}", f"{r['trainable_percent']:.4f}",
             f"{r['accuracy_mean']:.3f}" + ("" if r["accuracy_std"] is None else f" ± {r['accuracy_std']:.3f}"),
             f"{r['eval_loss_mean']:.4f}",
             f"{r['tokens_per_second']:,.0f}", f"{r['peak_memory_mb']:.1f}", f"{r['wall_seconds']:.1f}",
             str(r["n_seeds"])] for r in summary]
    widths = [max(len(h), *(len(x[i]) for x in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def load_compare(name: str | Path, runs_dir: str | Path | None = None) -> dict[str, Any]:
    """compare.json + curves.json of a finished (or running) comparison, for the app."""
    import json

    from experiments.runs import runs_root

    p = Path(name)
    if not (p / "compare.json").is_file():
        p = runs_root(runs_dir) / str(name)
    if not (p / "compare.json").is_file():
        raise ConfigError(f"no comparison {str(name)!r} in {runs_root(runs_dir)}; run `dii compare CONFIG.toml` first")
    data = json.loads((p / "compare.json").read_text())
    data["curves"] = json.loads((p / "curves.json").read_text()) if (p / "curves.json").is_file() else {}
    return data


def cli_compare(args) -> int:
    """`dii compare CONFIG.toml [--runs-dir DIR]` (registered in experiments/cli.py)."""
    from tqdm.auto import tqdm

    from experiments.cli import run_dir_of

    config = load_compare_config(args.config)
    out = run_dir_of(args, config.run_name)
    bar, bar_desc = None, None

    def progress(method: str, seed: int, step: int, n_steps: int, loss: float) -> None:
        nonlocal bar, bar_desc
        desc = f"{method} seed {seed}"
        if bar is None or bar_desc != desc:  # our own record: a disabled tqdm (TQDM_DISABLE=1) has no desc
            if bar is not None:
                bar.close()
            bar, bar_desc = tqdm(total=n_steps, desc=desc, leave=False), desc
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    try:
        result = compare(config, out_dir=out, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    print(format_summary(result.summary))
    print(f"comparison written to {result.path}")
    return 0
