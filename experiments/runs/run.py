"""The reader of a run of any kind: `Run`, and `load_run(name or path)`.

A search's results are a `Run` too, whether fresh from `AlignmentSearch.run()` (rows, curves
and the subspaces in memory) or read back from its folder: one class for one table
(`rows_for`, `best`, `iia`, `table`). A finetune, a comparison and a reuse run read their
payloads through `finetune_result()`, `comparison()` and `arms()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.errors import ConfigError
from experiments.runs.catalogue import effective_status, list_runs
from experiments.runs.schema import UNREADABLE, CellRecord, read_checked, read_manifest, rows_problem
from experiments.runs.store import NOT_IN_CSV, runs_root, subspace_dirname

@dataclass
class Run:
    name: str
    path: Path | None
    manifest: dict
    rows: list[dict] = field(default_factory=list)
    curves: dict[str, list[float]] = field(default_factory=dict)
    subspaces: dict[tuple[str, ...], Any] = field(default_factory=dict)  # fresh from a search, in memory
    complete: bool = True  # False when a search was stopped early

    @property
    def kind(self) -> str:
        return self.manifest.get("kind", "search")

    @property
    def config(self) -> dict:
        return self.manifest.get("config", {})

    @property
    def run_dir(self) -> Path | None:
        return self.path

    @property
    def main_method(self) -> str:
        return self.config.get("method", "das")

    # ------------------------------------------------------------ a search's table
    def variables(self) -> list[str]:
        return list(dict.fromkeys(r["variable"] for r in self.rows))

    def methods(self) -> list[str]:
        return list(dict.fromkeys(r["method"] for r in self.rows))

    def rows_for(self, variable: str | None = None, method: str | None = None) -> list[dict]:
        return [r for r in self.rows if (variable is None or r["variable"] == variable)
                and (method is None or r["method"] == method)]

    def best(self, variable: str, method: str | None = None) -> dict | None:
        """The site with the highest IIA for a variable (main method by default)."""
        rows = [r for r in self.rows_for(variable, method or self.main_method) if r.get("iia") is not None]
        return max(rows, key=lambda r: r["iia"]) if rows else None

    def iia(self, site, variable: str, method: str = "das") -> float | None:
        key = getattr(site, "key", site)
        hits = [r for r in self.rows_for(variable, method) if r["site"] == key]
        return hits[0]["iia"] if hits else None

    def table(self):
        import pandas as pd

        return pd.DataFrame([{k: v for k, v in r.items() if k not in NOT_IN_CSV} for r in self.rows])

    # ------------------------------------------------------------ a search's subspaces
    def subspace_names(self) -> list[str]:
        """The artifact directories under subspaces/ that hold a config.json."""
        d = self.path / "subspaces" if self.path else None
        return sorted(p.name for p in d.iterdir() if (p / "config.json").is_file()) if d and d.is_dir() else []

    def subspace_path(self, site_key: str, variable: str, method: str | None = None) -> Path:
        """The main method's artifact, or another method's with `method`."""
        if method == self.config.get("method"):
            method = None
        for what, value in (("site", site_key), ("variable", variable), ("method", method)):
            if value is not None and not _one_folder(value):
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

    # ------------------------------------------------------------ the other kinds' payloads
    def read(self, name: str, required: bool = True) -> Any:
        """A JSON payload of the run (None when absent and not required)."""
        p = self.path / name
        if not p.is_file() and not required:
            return None
        return read_checked(p, None, f"the {self.kind} run {self.name!r} is incomplete or damaged: delete it and rerun")

    def finetune_result(self) -> dict:
        """finetune.json: what `finetune()` returned (FinetuneResult.from_dict rebuilds it)."""
        return self._payload("finetune", "finetune.json")

    def comparison(self) -> dict:
        """compare.json (rows per method x seed, the per-method summary) and its curves."""
        data = self._payload("compare", "compare.json")
        return {**data, "curves": self.read("curves.json", required=False) or {}}

    def arms(self) -> dict[str, dict]:
        """A reuse run's finished arms by label, each its finetune.json."""
        if self.kind != "reuse":
            raise ConfigError(f"{self.path} is a {self.kind} run, not a finetune from a subspace")
        return {label: self.read(f"{dirname}/finetune.json") for label, dirname in (self.manifest.get("arms") or {}).items()
                if _one_folder(dirname)}

    def _payload(self, kind: str, name: str) -> dict:
        if self.kind != kind:
            raise ConfigError(f"{self.path} is a {self.kind} run, not a {kind}")
        data = self.read(name)
        if not isinstance(data, dict):
            raise ConfigError(f"{self.path / name} is a {type(data).__name__}, not an object; {UNREADABLE}")
        return data


def load_run(name: str | Path, root: str | Path | None = None) -> Run:
    """By name under the runs root, or by a path to a run directory."""
    p = Path(name)
    if not (p / "manifest.json").is_file():
        p = runs_root(root) / str(name)
    if not (p / "manifest.json").is_file():
        names = [r["name"] for r in list_runs(root)]
        raise ConfigError(f"no run {str(name)!r} in {runs_root(root)}; existing runs: {names or 'none'} "
                          f"(set --runs-dir or DII_RUNS to look elsewhere)")
    manifest = read_manifest(p)
    manifest = {**manifest, "status": effective_status(p, manifest)}
    rows, curves = [], {}
    if manifest.get("kind", "search") == "search":
        rows, curves = _search_tables(p)
    return Run(name=p.name, path=p, manifest=manifest, rows=rows, curves=curves)


def _search_tables(p: Path) -> tuple[list[dict], dict]:
    if (p / "results.json").is_file():
        rows = read_checked(p / "results.json", None, UNREADABLE)
        curves = read_checked(p / "curves.json", None, UNREADABLE) if (p / "curves.json").is_file() else {}
        where = p / "results.json"
    else:  # interrupted before the first merge: rebuild from the cells
        rows, curves = [], {}
        for cell in sorted((p / "cells").glob("*.json")) if (p / "cells").is_dir() else []:
            rec = read_checked(cell, CellRecord, f"delete {cell.name} and rerun with --resume to compute it again")
            rows.extend(rec["rows"])
            curves.update(rec.get("curves", {}))
        where = p / "cells"
    why = rows_problem(rows)
    if why:
        raise ConfigError(f"{where}: {why}; {UNREADABLE}")
    return rows, curves if isinstance(curves, dict) else {}


def _one_folder(value) -> bool:
    """A name that stays one folder down: a non-empty string, no separators, no leading dot."""
    return isinstance(value, str) and bool(value) and "/" not in value and "\\" not in value and not value.startswith(".")
