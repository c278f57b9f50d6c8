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

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

from pydantic import Field

from experiments.config import WorkbenchConfig, read_toml, resolve_beside
from experiments.errors import ConfigError
from experiments.finetune.config import METHODS, FinetuneConfig
from experiments.finetune.train import finetune

# What a per-method override may not touch: the comparison's data, budget, evaluation and seed.
FIXED_FIELDS = ("model", "task", "variant", "rule", "data", "eval_data", "eval_generate", "steps", "epochs",
                "batch_size", "grad_accum", "n_train", "n_eval", "eval_fraction", "eval_every", "seed", "max_length", "model_seed", "method", "name")
SUMMARY_COLUMNS = ["method", "trainable_params", "trainable_percent", "accuracy_mean", "accuracy_std",
                   "generation_mean", "generation_std", "generation_each", "base_generation", "eval_loss_mean",
                   "eval_loss_std", "tokens_per_second", "peak_memory_mb", "wall_seconds",
                   "n_seeds", "params_source"]


class CompareConfig(WorkbenchConfig):
    """Every method trained with the same data, step budget, evaluation and seeds."""

    KIND: ClassVar[str] = "compare config"
    TOML_TABLE: ClassVar[str] = "compare"

    finetune: dict[str, Any] = Field(description="the settings every method shares: a finetune config without "
                                     "'method' (model, task or data, steps, batch_size, ...), as a [finetune] table")
    methods: list[str] = Field(default_factory=lambda: list(METHODS), description=f"what trains, from {list(METHODS)}")
    seeds: list[int] = Field(default_factory=lambda: [0], description="every method trains once per seed")
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-method settings that change neither data, budget nor evaluation, as "
        "[overrides.<method>] tables (e.g. lr for full finetuning)")
    name: str | None = Field(None, description="run name (default: compare-<the first method's config hash>)")

    @classmethod
    def upgrade(cls, d: dict[str, Any]) -> dict[str, Any]:
        from causal.tasks import Task, task_spec_of

        d = super().upgrade(d)
        shared = d.get("finetune")
        if isinstance(shared, dict):
            shared = FinetuneConfig.upgrade(dict(shared))
            if isinstance(shared.get("task"), Task):
                shared["task"] = task_spec_of(shared["task"])
            d["finetune"] = shared
        return d

    def validate_fields(self) -> None:
        need = self.need
        need(len(self.methods) > 0, "methods", f"list at least one of {list(METHODS)}")
        for m in self.methods:
            need(m in METHODS, "methods", f"unknown method {m!r}; allowed values: {list(METHODS)}")
        need(len(set(self.methods)) == len(self.methods), "methods", "a method is listed twice; list each once")
        need(len(self.seeds) > 0 and len(set(self.seeds)) == len(self.seeds), "seeds",
             "list at least one integer seed, each once, e.g. [0, 1, 2]")
        need("method" not in self.finetune, "finetune", "[finetune] must not set 'method'; list the methods in "
             "[compare] methods")
        for m, o in self.overrides.items():
            need(m in self.methods, "overrides", f"[overrides.{m}] names a method that is not compared; "
                 f"methods: {self.methods}")
            bad = sorted(set(o) & set(FIXED_FIELDS))
            need(not bad, "overrides", f"[overrides.{m}] changes {bad}; every method shares the data, budget, "
                 "evaluation and seed, so set these in [finetune]")
        for m in self.methods:  # every method's config is checked now, not halfway through the run
            self.config_for(m, self.seeds[0])

    def hash_dict(self) -> dict[str, Any]:
        """As comparisons hashed before the shared rule: with `name` as None, and the shared
        finetune settings under their names of then (FinetuneConfig.HASH_NAMES)."""
        d = {**super().hash_dict(), "name": None}
        d["finetune"] = {FinetuneConfig.HASH_NAMES.get(k, k): v for k, v in d["finetune"].items()}
        return d

    def config_for(self, method: str, seed: int) -> FinetuneConfig:
        return FinetuneConfig.from_dict({**self.finetune, **self.overrides.get(method, {}), "method": method,
                                         "seed": seed})

    def default_run_name(self) -> str:
        return f"compare-{self.config_for(self.methods[0], self.seeds[0]).hash()}"

    def to_toml(self) -> str:
        import tomli_w

        head = {"methods": self.methods, "seeds": self.seeds, **({"name": self.name} if self.name else {})}
        return tomli_w.dumps({"compare": head, "finetune": self.finetune,
                              **({"overrides": self.overrides} if self.overrides else {})})


def load_compare_config(path: str | Path) -> CompareConfig:
    """[compare] (methods, seeds, name), [finetune] (the shared settings), [overrides.<method>];
    paths in [finetune] are relative to the file."""
    data = read_toml(path, "compare")
    unknown = sorted(set(data) - {"compare", "finetune", "overrides"})
    if unknown:
        raise ConfigError(f"compare config: unknown table(s) {unknown}; allowed: [compare], [finetune], "
                          "[overrides.<method>]")
    head = data.get("compare", {})
    if not isinstance(head, dict):
        raise ConfigError("compare config: [compare] must be a table with methods, seeds and name")
    shared = data.get("finetune", {})
    if not isinstance(shared, dict):
        raise ConfigError("compare config: put the shared finetune settings in a [finetune] table")
    shared = dict(shared)
    resolve_beside(shared, Path(path).parent, ("data", "eval_data", "init_from", "model"))
    if "task" in shared:
        from causal.tasks import spec_beside

        shared["task"] = spec_beside(shared["task"], Path(path).parent)
    return CompareConfig.from_dict({**head, "finetune": shared, "overrides": data.get("overrides", {})})


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
    store.start({"config": config.to_dict(), "config_hash": config.hash(), "versions": run_versions(),
                 "n_cells": len(config.methods) * len(config.seeds)}, kind="compare")
    rows, curves = [], {}
    base_by_seed: dict[int, float] = {}  # the held-out prompts depend on the seed only (FIXED_FIELDS)
    try:
        for method in config.methods:
            for seed in config.seeds:
                cfg = config.config_for(method, seed)
                cb = None if progress is None else (lambda s, n, l, m=method, sd=seed: progress(m, sd, s, n, l))
                r = finetune(cfg, progress=cb, base_generation=base_by_seed.get(seed))
                if r.base_generation_accuracy is not None:
                    base_by_seed[seed] = r.base_generation_accuracy
                rows.append({"method": method, "seed": seed, "trainable_params": r.trainable_params,
                             "own_count": r.own_count, "params_source": r.own_count_source,
                             "total_params": r.total_params, "trainable_percent": r.trainable_percent,
                             "accuracy": r.final_accuracy, "eval_loss": r.final_loss,
                             "token_accuracy": r.final_token_accuracy, "tokens_per_second": r.tokens_per_second,
                             "peak_memory_mb": r.peak_memory_mb, "wall_seconds": r.wall_seconds, "steps": r.steps,
                             "final_train_loss": r.loss_curve[-1] if r.loss_curve else None,
                             "generation_accuracy": r.generation_accuracy,
                             "base_generation_accuracy": r.base_generation_accuracy})
                curves.setdefault(method, {})[str(seed)] = {"loss": r.loss_curve, "eval": r.eval_curve}
                if r.model and method not in ("full",) and "model" not in store.manifest():
                    store.update_manifest(model=r.model)  # the frozen model every method started from
                summary = _write(store, rows, curves)
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
        generated = [r["generation_accuracy"] for r in rs if r.get("generation_accuracy") is not None]
        base = [r["base_generation_accuracy"] for r in rs if r.get("base_generation_accuracy") is not None]
        out.append({
            "method": method, "trainable_params": rs[0]["trainable_params"],
            "trainable_percent": rs[0]["trainable_percent"],
            # No spread from one seed: None (an empty cell), not a 0 that reads as "no variation".
            "accuracy_mean": statistics.fmean(acc), "accuracy_std": statistics.pstdev(acc) if len(acc) > 1 else None,
            # held-out answers generated exactly (greedy), each seed's too, and the base model's
            "generation_mean": statistics.fmean(generated) if generated else None,
            "generation_std": statistics.pstdev(generated) if len(generated) > 1 else None,
            "generation_each": " ".join(f"{g:.3f}" for g in generated) or None,
            "base_generation": statistics.fmean(base) if base else None,
            "eval_loss_mean": statistics.fmean(loss), "eval_loss_std": statistics.pstdev(loss) if len(loss) > 1 else None,
            "tokens_per_second": statistics.fmean(r["tokens_per_second"] for r in rs),
            "peak_memory_mb": max(r["peak_memory_mb"] for r in rs),
            "wall_seconds": statistics.fmean(r["wall_seconds"] for r in rs),
            "n_seeds": len(rs), "params_source": rs[0]["params_source"]})
    return out


def _write(store, rows, curves) -> list[dict]:
    summary = summarize(rows)
    store.write_json("compare.json", {"rows": rows, "summary": summary})
    store.write_text("compare.csv", _csv(summary))
    store.write_json("curves.json", curves)
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
    header = ["method", "params", "% model", "accuracy", "generated (each seed)", "base", "eval loss", "tokens/s",
              "peak MB", "wall s", "seeds"]
    rows = [[r["method"], f"{r['trainable_params']:,}", f"{r['trainable_percent']:.4f}",
             f"{r['accuracy_mean']:.3f}" + ("" if r["accuracy_std"] is None else f" ± {r['accuracy_std']:.3f}"),
             "-" if r.get("generation_mean") is None else f"{r['generation_mean']:.3f}"
             + ("" if r["generation_std"] is None else f" ± {r['generation_std']:.3f}") + f" ({r['generation_each']})",
             "-" if r.get("base_generation") is None else f"{r['base_generation']:.3f}",
             f"{r['eval_loss_mean']:.4f}",
             f"{r['tokens_per_second']:,.0f}", f"{r['peak_memory_mb']:.1f}", f"{r['wall_seconds']:.1f}",
             str(r["n_seeds"])] for r in summary]
    widths = [max(len(h), *(len(x[i]) for x in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])
