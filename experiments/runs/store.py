"""The writer of a run directory: `RunStore`, the one owner of every file in it, for every
kind. Searches write through it as their sink (`begin`, `record`, `end`, `fail`); finetunes,
comparisons and reuse arms through `start`, `write_json` / `write_text` / `write_dir` and
`finish`.

Every file is written to a temporary path and renamed (causal.io), and a cell's JSON is
written last, after its subspaces: a cell either appears whole or not at all, so `resume`
can trust it; a cell file that does not fit its schema is set aside and recomputed.
Starting a run under an existing name is refused when another process holds it, when the
kind, the config hash or the model fingerprint differs, and for a search with finished cells
unless resumed.
"""

from __future__ import annotations

import csv
import io
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from filelock import FileLock, Timeout

from causal.io import atomic_write_json, atomic_write_text, write_dir_atomic
from experiments.config import RUN_NAME_RULE, valid_run_name
from experiments.errors import ConfigError
from experiments.runs.schema import KINDS, STATUSES, CellRecord, Manifest, problem, read_checked

DEFAULT_ROOT = "runs"
LOCK_NAME = "run.lock"
# Columns of results.csv in this order; extra keys follow alphabetically.
CSV_COLUMNS = ["site", "layer", "position", "component", "variable", "method", "iia", "iia_low", "iia_high",
               "floor", "floor_rule", "above_floor", "k", "n_train", "n_test", "n_train_total", "n_test_total",
               "probe_accuracy", "final_loss", "seconds", "cell"]
# Per-example outcomes stay in results.json (the paired test reads them), not in the CSV.
NOT_IN_CSV = ("curve", "test_index", "test_correct", "test_predicted")


class RunStopped(KeyboardInterrupt):
    """A run stopped on request (the app's Cancel): recorded "interrupted", like Ctrl-C."""


def runs_root(root: str | Path | None = None) -> Path:
    """The argument, else $DII_RUNS, else ./runs. A path that is a file (or lies inside one)
    is refused: a run store is a folder."""
    path = Path(root if root is not None else os.environ.get("DII_RUNS", DEFAULT_ROOT))
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise ConfigError(f"the runs folder {str(path)!r} {'is' if p == path else 'lies inside'} the file "
                              f"{str(p)!r}; a run store is a folder: give another --runs-dir (or DII_RUNS)")
        if p.exists():
            break
    return path


def run_dir(default_name: str, out: str | Path | None = None, runs_dir: str | Path | None = None,
            name: str | None = None) -> Path:
    """Where a run is written: `out` itself, else <runs_dir>/<name or default_name>."""
    if out:
        return Path(out)
    name = name or default_name
    if not valid_run_name(name):
        raise ConfigError(f"run name {name!r}: {RUN_NAME_RULE}")
    return runs_root(runs_dir) / name


def subspace_dirname(site_key: str, variable: str, method: str | None = None) -> str:
    """<site>__<variable> for the run's main method; <site>__<variable>__<method> for the others."""
    return f"{site_key}__{variable}" + (f"__{method}" if method else "")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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


class RunStore:
    """Writes one run directory (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.notes: list[str] = []  # what the store did that the user should hear (a damaged cell set aside)

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

    # ------------------------------------------------------------ start and finish (every kind)
    def start(self, manifest: dict, resume: bool = False, kind: str = "search") -> None:
        """Create the run, or reopen it, and hold its lock until finish()."""
        if kind not in KINDS:
            raise ConfigError(f"run kind {kind!r} is not one of {list(KINDS)}")
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"{self.path} is a file, not a run folder; give the run another name or --out")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create the run folder {self.path} ({e.strerror or e}); "
                              "choose a runs folder you can write to") from None
        lock = FileLock(self.lock_path, thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            other = _manifest_or_empty(self.path)
            who = f" (pid {other.get('pid')} on {other.get('host')})" if other.get("pid") else ""
            raise ConfigError(f"run {self.name!r} is being written by another process{who}; wait for it to finish, "
                              f"or give this one another name (--name)") from None
        try:
            existing = self.manifest() if (self.path / "manifest.json").exists() else None
            if existing is not None:
                self._check_same_run(existing, manifest, kind, resume)
                manifest = {**existing, **manifest, "timings": (existing.get("timings") or {}) | (manifest.get("timings") or {})}
            else:
                manifest = {**manifest, "created": manifest.get("created") or utc_now()}
            if kind == "search":
                self.cells_dir.mkdir(parents=True, exist_ok=True)
            manifest.update(kind=kind, status="running", started=utc_now(), pid=os.getpid(), host=socket.gethostname(),
                            name=self.name)
            manifest.pop("error", None)
            manifest.pop("finished", None)
            self._write_manifest(manifest)
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
        old_fp = existing["model"].get("fingerprint") if isinstance(existing.get("model"), dict) else None
        new_fp = manifest["model"].get("fingerprint") if isinstance(manifest.get("model"), dict) else None
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
        (RunStopped, a KeyboardInterrupt), else "failed" with the error's message. When even
        that cannot be written (a full disk), the lock is released, so the run reads
        "interrupted", never "running"."""
        try:
            if isinstance(error, KeyboardInterrupt):
                self.finish("interrupted", **fields)
            else:
                self.finish("failed", **fields, error=f"{type(error).__name__}: {error}")
        except (OSError, ConfigError):
            self.release()

    def release(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()
            self._lock = None

    def manifest(self) -> dict:
        return read_checked(self.path / "manifest.json", Manifest, "the run is unreadable: delete it and rerun")

    def update_manifest(self, **fields) -> None:
        self._write_manifest({**self.manifest(), **fields})

    def _write_manifest(self, manifest: dict) -> None:
        why = problem(Manifest, manifest)
        if why:  # the writer keeps the schema its readers check
            raise ConfigError(f"a manifest for {self.path} does not fit its schema ({why}); this is a bug")
        self.write_json("manifest.json", manifest)

    # ------------------------------------------------------------ payloads (every kind)
    def write_json(self, name: str, obj: Any) -> Path:
        return self._write(name, lambda p: atomic_write_json(p, obj, sort_keys=True))

    def write_text(self, name: str, text: str) -> Path:
        return self._write(name, lambda p: atomic_write_text(p, text))

    def write_dir(self, name: str, fill: Callable[[Path], Any]) -> Path:
        """A folder of the run (an artifact), filled in a temporary sibling and swapped in."""
        return self._write(name, lambda p: write_dir_atomic(p, fill))

    def _write(self, name: str, write: Callable[[Path], Any]) -> Path:
        target = self.path / name
        if self.path.resolve() not in target.resolve().parents:
            raise ConfigError(f"{name!r} is not a file inside the run {self.path}")
        try:
            write(target)
        except OSError as e:
            raise ConfigError(f"cannot write {target} ({e.strerror or e}); free some space in {self.path.parent} or "
                              "choose another runs folder, then rerun (finished parts are kept)") from None
        return target

    # ------------------------------------------------------------ a search's cells (the search's sink)
    def begin(self, manifest: dict, resume: bool = False) -> dict[str, dict]:
        """Start a search run; with resume, the finished cells' records by key (to skip)."""
        self.start(manifest, resume=resume, kind="search")
        return self.finished_records() if resume else {}

    def record(self, cell_key: str, rows: list[dict], curves: dict, subspaces: dict) -> None:
        self.record_cell(cell_key, rows, curves, subspaces)

    def end(self, order: list[str], **fields) -> str:
        """Merge the tables and finish: "finished" once every cell of `order` is recorded."""
        self.merge(order=order)
        status = "finished" if set(order) <= self.finished_cells() else "interrupted"
        self.finish(status, **fields)
        return status

    def fail(self, error: BaseException, order: list[str], **fields) -> None:
        try:
            self.merge(order=order)
        except (OSError, ConfigError):
            pass  # the cells stay the source of truth; the outcome still gets recorded
        self.finish_raised(error, **fields)

    def finished_cells(self) -> set[str]:
        if not self.cells_dir.is_dir():
            return set()
        return {p.stem for p in self.cells_dir.glob("*.json")}

    def finished_records(self) -> dict[str, dict]:
        """Every readable cell record by key. A damaged one (not JSON, or not its schema) is set
        aside as <key>.json.damaged-<time> and left out, so the run recomputes it; `notes` says so."""
        records = {}
        for p in sorted(self.cells_dir.glob("*.json")) if self.cells_dir.is_dir() else []:
            try:
                rec = read_checked(p, CellRecord, "")
            except ConfigError as e:
                aside = p.with_name(f"{p.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
                try:
                    os.replace(p, aside)
                except FileNotFoundError:  # another rank set it aside first
                    continue
                self.notes.append(f"{str(e).rstrip('; ')}: set aside as {aside.name}; cell {p.stem} is computed again")
                continue
            records[rec["cell"]] = rec
        return records

    def record_cell(self, cell_key: str, rows: list[dict], curves: dict[str, list[float]] | None = None,
                    subspaces: dict[tuple[str, ...], Any] | None = None, merge: bool = True) -> None:
        """Subspaces first, then the cell file (the commit point), then the merged tables."""
        for key, artifact in (subspaces or {}).items():
            self.save_subspace(*key, artifact=artifact)
        record = {"cell": cell_key, "rows": rows, "curves": curves or {}}
        why = problem(CellRecord, record)
        if why:
            raise ConfigError(f"cell {cell_key}'s record does not fit its schema ({why}); this is a bug")
        self.write_json(f"cells/{cell_key}.json", record)
        if merge:
            self.merge()

    def save_subspace(self, site_key: str, variable: str, method: str | None = None, *, artifact) -> Path:
        return self.write_dir(f"subspaces/{subspace_dirname(site_key, variable, method)}", artifact.save)

    def merge(self, order: Iterable[str] | None = None) -> list[dict]:
        """Rebuild results.json/csv and curves.json from cells/ (in `order` when given)."""
        records = self.finished_records()
        keys = [k for k in order if k in records] if order is not None else []
        keys += sorted(k for k in records if k not in set(keys))
        rows, curves = [], {}
        for k in keys:
            rows.extend(records[k]["rows"])
            curves.update(records[k].get("curves", {}))
        self.write_json("results.json", rows)
        self.write_text("results.csv", rows_to_csv(rows))
        self.write_json("curves.json", curves)
        return rows


class ShardSink:
    """A torchrun rank's view of a shared search run: it records its own cells (no merge) and
    leaves starting, merging and finishing the run to rank 0."""

    def __init__(self, store: RunStore):
        self.store = store

    def begin(self, manifest: dict, resume: bool = False) -> dict[str, dict]:
        return self.store.finished_records() if resume else {}

    def record(self, cell_key: str, rows: list[dict], curves: dict, subspaces: dict) -> None:
        self.store.record_cell(cell_key, rows, curves, subspaces, merge=False)

    def end(self, order: list[str], **fields) -> str:
        return "finished" if set(order) <= self.store.finished_cells() else "interrupted"

    def fail(self, error: BaseException, order: list[str], **fields) -> None:
        pass


def _manifest_or_empty(path: Path) -> dict:
    try:
        return RunStore(path).manifest()
    except ConfigError:
        return {}
