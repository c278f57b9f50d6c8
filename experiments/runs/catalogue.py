"""The runs of a runs folder: `list_runs` (one summary per run, newest first; a run that
cannot be read is listed as "unreadable" with the reason), each run's effective status (a
"running" run whose lock nobody holds died: "interrupted"), and `delete_run`."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from filelock import FileLock, Timeout

from experiments.config import valid_run_name
from experiments.errors import ConfigError
from experiments.runs.schema import OLD_STATUSES, read_manifest
from experiments.runs.store import LOCK_NAME, runs_root


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
    status = OLD_STATUSES.get(status, status)
    if status == "running" and not lock_is_held(path):
        return "interrupted"
    return status


def summary_of(manifest: dict) -> dict:
    """What a run list shows of a run: its task, model and method(s), whatever its kind."""
    cfg = manifest.get("config") or {}
    if manifest.get("kind") == "compare":
        shared = cfg.get("finetune") if isinstance(cfg.get("finetune"), dict) else cfg
        return {"task": shared.get("task") or shared.get("data"), "model": shared.get("model"),
                "method": ", ".join(cfg.get("methods") or []) or None}
    return {"task": cfg.get("task") or cfg.get("data"), "model": cfg.get("model"), "method": cfg.get("method")}


def list_runs(root: str | Path | None = None, kind: str | None = None) -> list[dict]:
    """One summary dict per run directory (of `kind` if given), newest first."""
    base = runs_root(root)
    if not base.is_dir():
        return []
    out = []
    for p in base.iterdir():
        if p.name.startswith(".") or not (p / "manifest.json").is_file():  # .deleting-*: a run being removed
            continue
        row = {"name": p.name, "path": str(p), "kind": None, "task": None, "model": None, "method": None,
               "created": "", "status": "unreadable", "cells_done": 0, "cells_total": None, "reason": None}
        try:
            m = read_manifest(p)
        except ConfigError as e:
            row["reason"] = str(e)
            out.append(row)
            continue
        n_done = len(list((p / "cells").glob("*.json"))) if (p / "cells").is_dir() else 0
        row.update(kind=m.get("kind", "search"), **summary_of(m), created=str(m.get("created") or ""),
                   status=effective_status(p, m), cells_done=n_done, cells_total=m.get("n_cells"),
                   reason=m.get("error"))
        out.append(row)
    if kind is not None:
        out = [r for r in out if r["kind"] == kind]
    out.sort(key=lambda r: r["created"] or "", reverse=True)
    return out


def delete_run(name: str, root: str | Path | None = None) -> None:
    """Remove the run `name` from the runs root, and nothing else: refused for a name that is
    not a run directory there, and for a run a live process is writing. Renamed aside first,
    so a half-removed run is never listed."""
    base = runs_root(root)
    path = base / str(name)
    if not valid_run_name(name) or not (path / "manifest.json").is_file():
        names = [r["name"] for r in list_runs(root)]
        raise ConfigError(f"no run {name!r} in {base}; existing runs: {names or 'none'}")
    if lock_is_held(path):
        raise ConfigError(f"run {name!r} is being written by a live process; cancel or stop it first, then delete it")
    aside = base / f".deleting-{name}-{os.getpid()}-{time.time_ns()}"
    os.rename(path, aside)
    shutil.rmtree(aside, ignore_errors=True)
