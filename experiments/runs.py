"""The run store: one directory per run of any kind (search, finetune, compare), one
manifest schema, one lock, one status vocabulary, written so an interrupted run stays readable.

runs/<name>/
  manifest.json     kind, config and its hash, model fingerprint, versions, device, UTC times,
                    status (running | finished | interrupted | failed), pid and host
  run.lock          held (filelock) while a process writes the run: two never write one run,
                    and a "running" run whose lock is free died, so it reads "interrupted"
  search:   cells/<cell_key>.json (the source of truth), results.json/.csv, curves.json,
            subspaces/<site_key>__<variable>/ (Subspace artifacts)
  finetune: finetune.json, artifact/          compare: compare.json/.csv, curves.json

Every file is written to a temporary path and renamed (causal.io), and a cell's JSON is
written last, after its subspaces: a cell either appears whole or not at all, so `resume`
can trust it. Starting a run under an existing name is refused when the config hash or
the model fingerprint differs, and a search rerun needs --resume.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from filelock import FileLock, Timeout

from causal.io import atomic_write_json, atomic_write_text, write_dir_atomic
from experiments.errors import ConfigError

DEFAULT_ROOT = "runs"
STATUSES = ("running", "finished", "interrupted", "failed")
KINDS = ("search", "finetune", "compare", "reuse")  # reuse: the app's finetune arms from one subspace
LOCK_NAME = "run.lock"
# Columns of results.csv in this order; extra keys follow alphabetically.
CSV_COLUMNS = ["site", "layer", "position", "component", "variable", "method", "iia", "iia_low", "iia_high",
               "floor", "floor_rule", "above_floor", "k", "n_train", "n_test", "n_train_total", "n_test_total",
               "probe_accuracy", "final_loss", "seconds", "cell"]
# Per-example outcomes stay in results.json (the paired test reads them), not in the CSV.
NOT_IN_CSV = ("curve", "test_index", "test_correct")


class RunStopped(KeyboardInterrupt):
    """A run stopped on request (the app's Cancel): recorded "interrupted", like Ctrl-C."""


def plain_name(value) -> bool:
    """A name that stays one folder down: a non-empty string, no path separators, no leading dot."""
    return isinstance(value, str) and bool(value) and "/" not in value and "\\" not in value and not value.startswith(".")


def runs_root(root: str | Path | None = None) -> Path:
    """The argument, else $DII_RUNS, else ./runs."""
    return Path(root if root is not None else os.environ.get("DII_RUNS", DEFAULT_ROOT))


def subspace_dirname(site_key: str, variable: str, method: str | None = None) -> str:
    """<site>__<variable> for the run's main method; <site>__<variable>__<method> for the others."""
    return f"{site_key}__{variable}" + (f"__{method}" if method else "")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_text_atomic(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def write_json_atomic(path: Path, obj: Any) -> None:
    atomic_write_json(path, obj, sort_keys=True)


def rows_to_csv(rows: list[dict]) -> str:
    keys = set().union(*(r.keys() for r in rows)) if rows else set()
    keys -= set(NOT_IN_CSV)
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

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_NAME

    def start(self, manifest: dict, resume: bool = False, kind: str = "search") -> None:
        """Create the run, or reopen it with resume=True, and hold its lock until finish().
        Refused: a run another process holds; another kind, config hash or model fingerprint
        under this name; a search with finished cells and no resume."""
        if kind not in KINDS:
            raise ConfigError(f"run kind {kind!r} is not one of {list(KINDS)}")
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.lock_path, thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            other = _safe_manifest(self.path)
            who = f" (pid {other.get('pid')} on {other.get('host')})" if other.get("pid") else ""
            raise ConfigError(f"run {self.name!r} is being written by another process{who}; wait for it to finish, "
                              f"or give this one another name (--name)") from None
        try:
            existing = self.manifest() if (self.path / "manifest.json").exists() else None
            if existing is not None:
                self._check_same_run(existing, manifest, kind, resume)
                manifest = {**existing, **manifest, "timings": existing.get("timings", {}) | manifest.get("timings", {})}
            else:
                manifest = {**manifest, "created": manifest.get("created") or utc_now()}
            if kind == "search":
                self.cells_dir.mkdir(parents=True, exist_ok=True)
            manifest.update(kind=kind, status="running", started=utc_now(), pid=os.getpid(), host=socket.gethostname(),
                            name=self.name)
            manifest.pop("error", None)
            write_json_atomic(self.path / "manifest.json", manifest)
        except BaseException:
            lock.release()
            raise
        self._lock = lock

    def _check_same_run(self, existing: dict, manifest: dict, kind: str, resume: bool) -> None:
        old_kind = existing.get("kind", "search")
        if old_kind != kind:
            raise ConfigError(f"run {self.name!r} is a {old_kind} run; this is a {kind}: give it another name (--name)")
        old, new = existing.get("config_hash"), manifest.get("config_hash")
        if old and new and old != new:
            raise ConfigError(f"run {self.name!r} was made by another config (hash {old}; this config has hash {new}); "
                              f"rerun it with its own config or choose another name (--name)")
        old_fp = (existing.get("model") or {}).get("fingerprint") if isinstance(existing.get("model"), dict) else None
        new_fp = (manifest.get("model") or {}).get("fingerprint") if isinstance(manifest.get("model"), dict) else None
        if old_fp and new_fp and old_fp != new_fp:
            raise ConfigError(f"run {self.name!r} was made with other model weights (fingerprint {old_fp}; the model "
                              f"now has {new_fp}); its subspaces would not fit: choose another name (--name)")
        if kind == "search" and not resume and self.finished_cells():
            raise ConfigError(f"run {self.name!r} already exists in {self.path.parent}; pass --resume to "
                              f"continue it, or give the config another name")

    def finish(self, status: str, **fields) -> None:
        """Record the outcome (UTC) and release the lock."""
        if status not in STATUSES:
            raise ConfigError(f"run status {status!r} is not one of {list(STATUSES)}")
        try:
            self.update_manifest(status=status, finished=utc_now(), **fields)
        finally:
            self.release()

    def finish_raised(self, error: BaseException, **fields) -> None:
        """Record a run that ended on an exception: "interrupted" for Ctrl-C or a stop on request
        (RunStopped, a KeyboardInterrupt), else "failed" with the error's message."""
        if isinstance(error, KeyboardInterrupt):
            self.finish("interrupted", **fields)
        else:
            self.finish("failed", **fields, error=f"{type(error).__name__}: {error}")

    def release(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()
            self._lock = None

    def effective_status(self) -> str:
        return effective_status(self.path, _safe_manifest(self.path))

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
        for key, artifact in (subspaces or {}).items():
            self.save_subspace(*key, artifact=artifact)
        write_json_atomic(self.cells_dir / f"{cell_key}.json",
                          {"cell": cell_key, "rows": rows, "curves": curves or {}})
        if merge:
            self.merge()

    def save_subspace(self, site_key: str, variable: str, method: str | None = None, *, artifact) -> Path:
        """Save into a temporary sibling directory, then swap it in."""
        return write_dir_atomic(self.subspaces_dir / subspace_dirname(site_key, variable, method), artifact.save)

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

    def subspace_names(self) -> list[str]:
        """The artifact directories under subspaces/ that hold a config.json."""
        d = self.path / "subspaces"
        return sorted(p.name for p in d.iterdir() if (p / "config.json").is_file()) if d.is_dir() else []

    def subspace_path(self, site_key: str, variable: str, method: str | None = None) -> Path:
        """The main method's artifact, or another method's with `method`."""
        if method == self.config.get("method"):
            method = None
        for what, value in (("site", site_key), ("variable", variable), ("method", method)):
            if value is not None and not plain_name(value):
                raise ConfigError(f"{what} {value!r} is not a {what} name (no path separators or leading dots); "
                                  f"`dii show {self.name}` lists the run's sites and variables")
        base = (self.path / "subspaces").resolve()
        p = self.path / "subspaces" / subspace_dirname(site_key, variable, method)
        if p.resolve().parent != base:  # a link out of the run is not the run's artifact
            raise ConfigError(f"{p} leads outside {base}; export only the run's own subspaces")
        if not p.is_dir():
            have = sorted(d.name for d in (self.path / "subspaces").glob("*__*")) if (self.path / "subspaces").is_dir() else []
            raise ConfigError(f"run {self.name!r} has no subspace for site {site_key!r} and variable {variable!r}; "
                              f"available: {[h.replace('__', ' / ') for h in have]}")
        return p

    def load_subspace(self, site_key: str, variable: str, model=None, method: str | None = None):
        from interventions import Subspace

        return Subspace.load(self.subspace_path(site_key, variable, method), model=model)


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
    problem = manifest_problem(manifest)
    if problem:
        raise ConfigError(f"{p / 'manifest.json'}: {problem}; the run is unreadable: delete it and rerun")
    manifest = {**manifest, "status": effective_status(p, manifest)}
    if (p / "results.json").is_file():
        rows, curves = _read_json(p / "results.json"), (_read_json(p / "curves.json") if (p / "curves.json").is_file() else {})
        where = p / "results.json"
    else:  # interrupted before the first merge: rebuild from the cells
        rows, curves = [], {}
        for rec in store.cell_records():
            if not isinstance(rec, dict) or not isinstance(rec.get("rows"), list):
                raise ConfigError(f"a cell file in {p / 'cells'} has no 'rows' list; the run is unreadable: "
                                  "delete that cell file and rerun with --resume")
            rows.extend(rec["rows"])
            curves.update(rec.get("curves", {}) if isinstance(rec.get("curves"), dict) else {})
        where = p / "cells"
    problem = rows_problem(rows)
    if problem:
        raise ConfigError(f"{where}: {problem}; the run is unreadable: delete it and rerun")
    return Run(name=p.name, path=p, manifest=manifest, rows=rows, curves=curves)


# What every result row holds, and of which type (the table, `dii show` and the app read these).
ROW_FIELDS = {"variable": str, "method": str, "iia": (int, float, type(None))}


def manifest_problem(m) -> str | None:
    """Why a manifest cannot be read as one (None when it can)."""
    if not isinstance(m, dict):
        return f"the manifest is a {type(m).__name__}, not a JSON object"
    if not m:
        return "the manifest is empty"
    if not isinstance(m.get("config", {}), dict):
        return f"its 'config' is a {type(m['config']).__name__}, not a table"
    for key in ("created", "status", "kind"):
        if key in m and not isinstance(m[key], str):
            return f"its {key!r} is {m[key]!r}, not a string"
    return None


def rows_problem(rows) -> str | None:
    """Why result rows cannot be shown (None when they can)."""
    if not isinstance(rows, list):
        return f"the results are a {type(rows).__name__}, not a list of rows"
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            return f"result row {i} is a {type(row).__name__}, not an object"
        for key, kind in ROW_FIELDS.items():
            if key not in row:
                return f"result row {i} has no {key!r}"
            if not isinstance(row[key], kind) or isinstance(row[key], bool):
                return f"result row {i} has {key} = {row[key]!r}, not a {getattr(kind, '__name__', 'number')}"
    return None


def _safe_manifest(path: Path) -> dict:
    try:
        m = json.loads((Path(path) / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    return m if isinstance(m, dict) else {}


def lock_is_held(path: Path) -> bool:
    """Does a live process hold this run's lock? (flock: a dead process holds nothing)."""
    lock_path = Path(path) / LOCK_NAME
    if not lock_path.exists():
        return False
    lock = FileLock(lock_path, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def effective_status(path: Path, manifest: dict) -> str:
    """The manifest's status, except that a "running" run nobody holds died: "interrupted"."""
    status = manifest.get("status", "unknown")
    status = {"done": "finished"}.get(status, status)  # the vocabulary of older finetune/compare runs
    if status == "running" and not lock_is_held(path):
        return "interrupted"
    return status


def list_runs(root: str | Path | None = None, kind: str | None = None) -> list[dict]:
    """One summary dict per run directory (of `kind` if given), newest first. A directory
    whose manifest cannot be read is listed with status "unreadable" and the reason."""
    base = runs_root(root)
    if not base.is_dir():
        return []
    out = []
    for p in base.iterdir():
        mf = p / "manifest.json"
        if p.name.startswith("."):  # a run being deleted (delete_run renames it aside first)
            continue
        if not mf.is_file():
            continue
        row = {"name": p.name, "path": str(p), "kind": None, "task": None, "model": None, "method": None,
               "created": "", "status": "unreadable", "cells_done": 0, "cells_total": None, "reason": None}
        try:
            m = json.loads(mf.read_text())
            problem = manifest_problem(m)
            if problem:
                raise ValueError(problem)
            cfg = m.get("config", {})
        except (OSError, ValueError) as e:
            row["reason"] = f"manifest.json cannot be read: {e}"
            out.append(row)
            continue
        n_done = len(list((p / "cells").glob("*.json"))) if (p / "cells").is_dir() else 0
        row.update(kind=m.get("kind", "search"), task=cfg.get("task"), model=cfg.get("model"),
                   method=cfg.get("method"), created=str(m.get("created", "")), status=effective_status(p, m),
                   cells_done=n_done, cells_total=m.get("n_cells"), reason=m.get("error"))
        out.append(row)
    if kind is not None:
        out = [r for r in out if r["kind"] == kind]
    out.sort(key=lambda r: r["created"] or "", reverse=True)
    return out


def delete_run(name: str, root: str | Path | None = None) -> None:
    """Remove the run `name` from the runs root, and nothing else: refused for a name that is
    not a run directory there, and for a run a live process is writing. Renamed aside first,
    so a half-removed run is never listed."""
    import shutil
    import time

    base = runs_root(root)
    path = base / str(name)
    if not plain_name(name) or not (path / "manifest.json").is_file():
        names = [r["name"] for r in list_runs(root)]
        raise ConfigError(f"no run {name!r} in {base}; existing runs: {names or 'none'}")
    if lock_is_held(path):
        raise ConfigError(f"run {name!r} is being written by a live process; cancel or stop it first, then delete it")
    aside = base / f".deleting-{name}-{os.getpid()}-{time.time_ns()}"
    os.rename(path, aside)
    shutil.rmtree(aside, ignore_errors=True)


def run_versions() -> dict:
    """Library versions every manifest records."""
    import platform

    import nnsight
    import torch
    import transformers

    from interventions.artifact import library_version

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "nnsight": getattr(nnsight, "__version__", "unknown"), "dii-workbench": library_version(),
            "python": platform.python_version()}
