"""The run store on its own: atomic cells, merge, resume bookkeeping, listing and loading."""

import csv
import json

import pytest

from causal.errors import WorkbenchError
from experiments.runs import RunStore, list_runs, load_run, rows_to_csv, runs_root


class FakeArtifact:
    """Anything with save(dir) goes into subspaces/; the real Subspace is tested in interventions."""

    def __init__(self, payload: str, fail: bool = False):
        self.payload, self.fail = payload, fail

    def save(self, d):
        (d / "config.json").write_text(json.dumps({"payload": self.payload}))
        if self.fail:
            raise RuntimeError("disk full")


def _row(site, var, method, iia):
    return {"site": site, "layer": int(site[1]), "position": "last", "component": "block_output",
            "variable": var, "method": method, "iia": iia, "k": 2, "n_train": 10, "n_test": 5}


def test_record_merge_and_load(tmp_path):
    store = RunStore.named("r1", tmp_path)
    store.start({"config": {"task": "t", "method": "das"}, "config_hash": "abc", "created": "2025-01-01", "n_cells": 2})
    store.record_cell("das__L0.block_output.last", [_row("L0.block_output.last", "V1", "das", 0.9)],
                      curves={"das__L0.block_output.last": [1.0, 0.5]},
                      subspaces={("L0.block_output.last", "V1"): FakeArtifact("a")})
    store.record_cell("vanilla__L0.block_output.last", [_row("L0.block_output.last", "V1", "vanilla", 0.6)])
    assert store.finished_cells() == {"das__L0.block_output.last", "vanilla__L0.block_output.last"}

    rows = json.loads((store.path / "results.json").read_text())
    assert len(rows) == 2
    with open(store.path / "results.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert [float(r["iia"]) for r in csv_rows] == [r["iia"] for r in rows]
    assert json.loads((store.path / "curves.json").read_text()) == {"das__L0.block_output.last": [1.0, 0.5]}
    assert json.loads((store.path / "subspaces" / "L0.block_output.last__V1" / "config.json").read_text()) == {"payload": "a"}
    # no temp files left behind
    assert not [p for p in store.path.rglob("*") if p.name.startswith(".")]

    run = load_run("r1", tmp_path)
    assert run.best("V1")["iia"] == 0.9
    assert run.subspace_path("L0.block_output.last", "V1").is_dir()
    with pytest.raises(WorkbenchError, match="no subspace"):
        run.subspace_path("L5.block_output.last", "V1")
    assert [r["name"] for r in list_runs(tmp_path)] == ["r1"]
    assert list_runs(tmp_path)[0]["cells_done"] == 2


def test_failed_subspace_save_does_not_commit_the_cell(tmp_path):
    store = RunStore(tmp_path / "r")
    store.start({"config": {}, "config_hash": "h"})
    with pytest.raises(RuntimeError):
        store.record_cell("das__L1.block_output.last", [_row("L1.block_output.last", "V1", "das", 0.5)],
                          subspaces={("L1.block_output.last", "V1"): FakeArtifact("x", fail=True)})
    assert store.finished_cells() == set()
    assert not (store.subspaces_dir / "L1.block_output.last__V1").exists()
    assert not list(store.subspaces_dir.iterdir())  # the temp dir was removed too


def test_existing_run_needs_resume_and_the_same_config(tmp_path):
    store = RunStore.named("r", tmp_path)
    store.start({"config": {}, "config_hash": "h1"})
    store.record_cell("c1", [_row("L0.block_output.last", "V1", "das", 0.5)])
    store.finish("interrupted")
    with pytest.raises(WorkbenchError, match="--resume"):
        RunStore.named("r", tmp_path).start({"config": {}, "config_hash": "h1"})
    with pytest.raises(WorkbenchError, match="another config"):
        RunStore.named("r", tmp_path).start({"config": {}, "config_hash": "h2"}, resume=True)
    with pytest.raises(WorkbenchError, match="another config"):  # a rerun without resume too
        RunStore.named("r", tmp_path).start({"config": {}, "config_hash": "h2"})
    RunStore.named("r", tmp_path).start({"config": {}, "config_hash": "h1"}, resume=True)
    assert RunStore.named("r", tmp_path).finished_cells() == {"c1"}


def test_load_run_errors_and_root_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DII_RUNS", str(tmp_path))
    assert runs_root() == tmp_path
    with pytest.raises(WorkbenchError, match="no run 'nope'"):
        load_run("nope")
    store = RunStore.named("r", tmp_path)
    store.start({"config": {}})
    (store.path / "cells" / "bad.json").write_text("{not json")
    with pytest.raises(WorkbenchError, match="not valid JSON"):
        store.merge()


def test_csv_has_fixed_leading_columns_and_drops_curves():
    text = rows_to_csv([{**_row("L0.block_output.last", "V1", "das", 0.75), "curve": [1, 2], "zzz": 1}])
    header = text.splitlines()[0].split(",")
    assert header[:3] == ["site", "layer", "position"]
    assert "curve" not in header and header[-1] == "zzz"
