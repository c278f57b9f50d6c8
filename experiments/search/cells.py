"""The shapes a search hands out: a sweep `Cell` (method x site x seed) and the `Progress`
events its callbacks receive. Its results are a `experiments.runs.Run`."""

from __future__ import annotations

from dataclasses import dataclass

from interventions import Site


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
    """What progress callbacks receive. event: "cell_start", "step", "cell_done", "cell_skipped", or
    "note" (`message`: something the user should hear, such as a damaged cell set aside)."""

    event: str
    cell: str
    cell_index: int
    n_cells: int
    step: int = 0
    n_steps: int = 0
    loss: float = float("nan")
    rows: list[dict] | None = None
    message: str = ""
    is_main: bool = True  # False on torchrun ranks other than 0 (the CLI draws bars on rank 0 only)
