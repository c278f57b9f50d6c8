"""The run store: one directory per search, written so that an interrupted run stays readable.

runs/<name>/
  manifest.json                      config, seed, versions, device, model fingerprint, timings
  cells/<cell_key>.json              one file per finished sweep cell (rows + curves); the source of truth
  results.json, results.csv          all rows, merged from cells/ after every cell
  curves.json                        training curves by cell key
  subspaces/<site_key>__<variable>/  Subspace artifacts (config.json + subspace.safetensors)

Every file is written to a temporary path and renamed, and a cell's JSON is written last,
after its subspaces: a cell either appears whole or not at all, so `resume` can trust it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from experiments.errors import ConfigError

DEFAULT_ROOT = "runs"
# Columns of results.csv in this order; extra keys follow alphabetically.
CSV_COLUMNS = ["site", "layer", "position", "component", "variable", "method", "iia", "k",
               "n_train", "n_test", "n_train_total", "n_test_total", "probe_accuracy", "final_loss", "seconds", "cell"]


def runs_root(root: str | Path | None = None) -> Path:
    """The argument, else $DII_RUNS, else ./runs."""
    return Path(root if root is not None else os.environ.get("DII_RUNS", DEFAULT_ROOT))


def subspace_dirname(site_key: str, variable: str) -> str:
    return f"{site_key}__{variable}"


# ------------------------------------------------------------------ atomic writes
def write_text_atomic(path: Path, text: str) -> None:
    """Temp file in the same directory, fsync, rename (interventions.io's helper)."""
    from interventions.io import atomic_write_bytes

    atomic_write_bytes(path, text.encode("utf-8"))


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
    except ImportError:
        pass
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def rows_to_csv(rows: list[dict]) -> str:
    keys = set().union(*(r.keys() for r in rows)) if rows else set()
    keys.discard("curve")
    cols = [c for c in CSV_COLUMNS if c in keys] + sorted(keys - set(CSV_COLUMNS))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in cols})
    return buf.getvalue()


# ------------------------------------------------------------------ writing a run
class RunStore:
    """Writes one run directory. Used by AlignmentSearch.run(run_dir=...) and by the CLI."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def named(cls, name: str, root: str | Path | None = None) -> "RunStore":
        return cls(runs_root(root) / name)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def cells_dir(self) -> Path:
        return self.path / "cells"

    @property
    def subspaces_dir(self) -> Path:
        return self.path / "subspaces"

    def start(self, manifest: dict, resume: bool = False) -> None:
        """Create the run, or reopen it with resume=True. A finished cell in an existing run
        without resume is refused, so two searches never mix in one directory."""
        existing = self.manifest() if (self.path / "manifest.json").exists() else None
        if existing is not None:
            if not resume and self.finished_cells():
                raise ConfigError(f"run {self.name!r} already exists in {self.path.parent}; pass --resume to "
                                  f"continue it, or give the config another name")
            old, new = existing.get("config_hash"), manifest.get("config_hash")
            if resume and old and new and old != new:
                raise ConfigError(f"run {self.name!r} was made by another config (hash {old}, this one {new}); "
                                  f"resume it with its own config or choose another name")
            manifest = {**existing, **manifest, "timings": existing.get("timings", {}) | manifest.get("timings", {})}
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path / "manifest.json", manifest)

    def manifest(self) -> dict:
        return _read_json(self.path / "manifest.json")

    def update_manifest(self, **fields) -> None:
        m = self.manifest()
        m.update(fields)
        write_json_atomic(self.path / "manifest.json", m)

    def finished_cells(self) -> set[str]:
        if not self.cells_dir.is_dir():
            return set()
        return {p.stem for p in self.cells_dir.glob("*.json")}

    def record_cell(self, cell_key: str, rows: list[dict], curves: dict[str, list[float]] | None = None,
                    subspaces: dict[tuple[str, str], Any] | None = None, merge: bool = True) -> None:
        """Subspaces first, then the cell file (the commit point), then the merged tables."""
        for (site_key, variable), artifact in (subspaces or {}).items():
            self.save_subspace(site_key, variable, artifact)
        write_json_atomic(self.cells_dir / f"{cell_key}.json",
                          {"cell": cell_key, "rows": rows, "curves": curves or {}})
        if merge:
            self.merge()

    def save_subspace(self, site_key: str, variable: str, artifact) -> Path:
        """Save into a temporary sibling directory, then swap it in."""
        final = self.subspaces_dir / subspace_dirname(site_key, variable)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            artifact.save(tmp)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def cell_records(self) -> list[dict]:
        return [_read_json(p) for p in sorted(self.cells_dir.glob("*.json"))] if self.cells_dir.is_dir() else []

    def merge(self, order: Iterable[str] | None = None) -> list[dict]:
        """Rebuild results.json/csv and curves.json from cells/ (in `order` when given)."""
        records = {r["cell"]: r for r in self.cell_records()}
        keys = [k for k in order if k in records] if order is not None else []
        keys += sorted(k for k in records if k not in set(keys))
        rows, curves = [], {}
        for k in keys:
            rows.extend(records[k]["rows"])
            curves.update(records[k].get("curves", {}))
        write_json_atomic(self.path / "results.json", rows)
        write_text_atomic(self.path / "results.csv", rows_to_csv(rows))
        write_json_atomic(self.path / "curves.json", curves)
        return rows


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing; the run directory is incomplete (rerun with --resume)") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); delete it and rerun with --resume") from None


# ------------------------------------------------------------------ reading runs
@dataclass
class Run:
    name: str
    path: Path
    manifest: dict
    rows: list[dict]
    curves: dict[str, list[float]] = field(default_factory=dict)

    @property
    def config(self) -> dict:
        return self.manifest.get("config", {})

    def variables(self) -> list[str]:
        return list(dict.fromkeys(r["variable"] for r in self.rows))

    def methods(self) -> list[str]:
        return list(dict.fromkeys(r["method"] for r in self.rows))

    def rows_for(self, variable: str | None = None, method: str | None = None) -> list[dict]:
        return [r for r in self.rows if (variable is None or r["variable"] == variable)
                and (method is None or r["method"] == method)]

    def best(self, variable: str, method: str | None = None) -> dict | None:
        """The site with the highest IIA for a variable (main method by default)."""
        method = method or self.manifest.get("config", {}).get("method", "das")
        rows = [r for r in self.rows_for(variable, method) if r.get("iia") is not None]
        return max(rows, key=lambda r: r["iia"]) if rows else None

    def subspace_path(self, site_key: str, variable: str) -> Path:
        p = self.path / "subspaces" / subspace_dirname(site_key, variable)
        if not p.is_dir():
            have = sorted(d.name for d in (self.path / "subspaces").glob("*__*")) if (self.path / "subspaces").is_dir() else []
            raise ConfigError(f"run {self.name!r} has no subspace for site {site_key!r} and variable {variable!r}; "
                              f"available: {[h.replace('__', ' / ') for h in have]}")
        return p

    def load_subspace(self, site_key: str, variable: str, model=None):
        from interventions import Subspace

        return Subspace.load(self.subspace_path(site_key, variable), model=model)


def load_run(name: str | Path, root: str | Path | None = None) -> Run:
    """By name under the runs root, or by a path to a run directory."""
    p = Path(name)
    if not (p / "manifest.json").is_file():
        p = runs_root(root) / str(name)
    if not (p / "manifest.json").is_file():
        names = [r["name"] for r in list_runs(root)]
        raise ConfigError(f"no run {str(name)!r} in {runs_root(root)}; existing runs: {names or 'none'} "
                          f"(set --runs-dir or DII_RUNS to look elsewhere)")
    store = RunStore(p)
    manifest = store.manifest()
    if (p / "results.json").is_file():
        rows, curves = _read_json(p / "results.json"), (_read_json(p / "curves.json") if (p / "curves.json").is_file() else {})
    else:  # interrupted before the first merge: rebuild from the cells
        rows, curves = [], {}
        for rec in store.cell_records():
            rows.extend(rec["rows"])
            curves.update(rec.get("curves", {}))
    return Run(name=p.name, path=p, manifest=manifest, rows=rows, curves=curves)


def list_runs(root: str | Path | None = None) -> list[dict]:
    """One summary dict per run directory, newest first."""
    base = runs_root(root)
    if not base.is_dir():
        return []
    out = []
    for p in base.iterdir():
        mf = p / "manifest.json"
        if not mf.is_file():
            continue
        try:
            m = json.loads(mf.read_text())
        except json.JSONDecodeError:
            continue
        cfg = m.get("config", {})
        n_done = len(list((p / "cells").glob("*.json"))) if (p / "cells").is_dir() else 0
        out.append({"name": p.name, "path": str(p), "task": cfg.get("task"), "model": cfg.get("model"),
                    "method": cfg.get("method"), "created": m.get("created", ""), "status": m.get("status", "unknown"),
                    "cells_done": n_done, "cells_total": m.get("n_cells")})
    out.sort(key=lambda r: r["created"] or "", reverse=True)
    return out
