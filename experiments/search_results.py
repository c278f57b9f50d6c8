"""The shapes a search hands out: a sweep `Cell` (method x site x seed), the `Progress`
events its callbacks receive, and `SearchResults` (rows, curves, subspaces, manifest)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from interventions import Site, Subspace


@dataclass(frozen=True)
class Cell:
    """One independent unit of a sweep: a method (or control) at a site, for one seed when
    the config lists several."""

    method: str
    site: Site
    seed: int | None = None

    @property
    def key(self) -> str:
        return f"{self.method}__{self.site.key}" + ("" if self.seed is None else f"__seed{self.seed}")


@dataclass
class Progress:
    """What progress callbacks receive. event: "cell_start", "step", "cell_done", "cell_skipped"."""

    event: str
    cell: str
    cell_index: int
    n_cells: int
    step: int = 0
    n_steps: int = 0
    loss: float = float("nan")
    rows: list[dict] | None = None
    is_main: bool = True  # False on torchrun ranks other than 0 (the CLI draws bars on rank 0 only)


@dataclass
class SearchResults:
    rows: list[dict]
    curves: dict[str, list[float]] = field(default_factory=dict)
    subspaces: dict[tuple[str, str], Subspace] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    run_dir: Path | None = None
    complete: bool = True  # False when should_stop ended the run early

    def table(self):
        import pandas as pd

        from experiments.runs import NOT_IN_CSV

        return pd.DataFrame([{k: v for k, v in r.items() if k not in NOT_IN_CSV} for r in self.rows])

    def rows_for(self, variable: str | None = None, method: str | None = None) -> list[dict]:
        return [r for r in self.rows if (variable is None or r["variable"] == variable)
                and (method is None or r["method"] == method)]

    def iia(self, site: Site | str, variable: str, method: str = "das") -> float | None:
        key = site.key if isinstance(site, Site) else site
        hits = [r for r in self.rows_for(variable, method) if r["site"] == key]
        return hits[0]["iia"] if hits else None

    def best(self, variable: str, method: str | None = None) -> dict | None:
        method = method or self.manifest.get("config", {}).get("method", "das")
        rows = [r for r in self.rows_for(variable, method) if r.get("iia") is not None]
        return max(rows, key=lambda r: r["iia"]) if rows else None


