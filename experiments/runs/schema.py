"""The files of a run, as pydantic schemas: the writer checks what it writes against them and
every reader checks what it reads, so a damaged field is one clear error naming the file and
the field, never a KeyError deep in a loop.

- manifest.json: `Manifest` (kind, status, config, counts; other keys are kept as written)
- cells/<key>.json: `CellRecord` (the cell's key, its result rows, its loss curves)
- results.json: a list of `ResultRow`
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from experiments.errors import ConfigError

STATUSES = ("running", "finished", "interrupted", "failed")
KINDS = ("search", "finetune", "compare", "reuse")  # reuse: the app's finetune arms from one subspace
OLD_STATUSES = {"done": "finished"}  # the vocabulary of older finetune and compare runs
UNREADABLE = "the run is unreadable: delete it and rerun"


class _Checked(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class Manifest(_Checked):
    kind: Literal[KINDS] = "search"  # runs from before kinds were recorded are searches
    status: str = "running"
    config: dict[str, Any] = {}
    config_hash: str | None = None
    created: str | None = None
    started: str | None = None
    finished: str | None = None
    n_cells: int | None = None
    cells: list[str] | None = None
    model: dict[str, Any] | str | None = None
    error: str | None = None
    pid: int | None = None
    host: str | None = None
    timings: dict[str, Any] | None = None

    @field_validator("status")
    @classmethod
    def _known_status(cls, v: str) -> str:
        if OLD_STATUSES.get(v, v) not in STATUSES:
            raise ValueError(f"not one of {list(STATUSES)}")
        return v

    @field_validator("n_cells")
    @classmethod
    def _count(cls, v):
        if v is not None and v < 0:
            raise ValueError("a count of cells is >= 0")
        return v


class ResultRow(_Checked):
    cell: str | None = None
    site: str | None = None
    variable: str
    method: str
    iia: float | None = None
    n_test: int | None = None


class CellRecord(_Checked):
    cell: str
    rows: list[ResultRow]
    curves: dict[str, list[float]] = {}


def problem(schema: type[BaseModel], data: Any) -> str | None:
    """Why `data` does not fit `schema`, naming the field ("'n_cells' is 'lots': ..."), or None."""
    try:
        schema.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = err.get("loc", ())
        if not loc:
            return f"it is a {type(data).__name__}, not a JSON object"
        where = ".".join(str(x) for x in loc)
        if err.get("type") == "missing":
            return f"it has no {where!r}"
        got = err.get("input")
        shown = repr(got) if not isinstance(got, (dict, list)) else f"a {type(got).__name__}"
        return f"{where!r} is {shown}: {err.get('msg')}"
    return None


def read_checked(path: Path, schema: type[BaseModel] | None, fix: str) -> Any:
    """The JSON at `path`, checked against `schema` (a list of it for results.json: pass
    `list[ResultRow]` through `rows_problem`); any fault one ConfigError naming the file,
    the field and `fix`."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing; {fix}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); {fix}") from None
    why = problem(schema, data) if schema is not None else None
    if why:
        raise ConfigError(f"{path}: {why}; {fix}")
    return data


def rows_problem(rows: Any) -> str | None:
    """Why result rows cannot be shown (None when they can)."""
    if not isinstance(rows, list):
        return f"the results are a {type(rows).__name__}, not a list of rows"
    for i, row in enumerate(rows):
        why = problem(ResultRow, row)
        if why:
            return f"result row {i}: {why}"
    return None


def read_manifest(p: Path) -> dict:
    """The run's manifest, checked whole against the schema its writer keeps."""
    m = read_checked(p / "manifest.json", None, UNREADABLE)
    if isinstance(m, dict) and not m:
        raise ConfigError(f"{p / 'manifest.json'}: the manifest is empty; {UNREADABLE}")
    why = problem(Manifest, m)
    if why:
        raise ConfigError(f"{p / 'manifest.json'}: {why}; {UNREADABLE}")
    return m
