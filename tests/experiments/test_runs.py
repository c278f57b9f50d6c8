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
    assert store.merge() == []  # a damaged cell is set aside (and computed again on resume), with a note
    assert not (store.path / "cells" / "bad.json").exists()
    assert [p.name.split(".damaged-")[0] for p in (store.path / "cells").glob("bad.json.damaged-*")] == ["bad.json"]
    assert "not valid JSON" in store.notes[0] and "computed again" in store.notes[0]


def test_csv_has_fixed_leading_columns_and_drops_curves():
    text = rows_to_csv([{**_row("L0.block_output.last", "V1", "das", 0.75), "curve": [1, 2], "zzz": 1}])
    header = text.splitlines()[0].split(",")
    assert header[:3] == ["site", "layer", "position"]
    assert "curve" not in header and header[-1] == "zzz"


def test_delete_run_removes_that_run_only_and_refuses_what_is_not_one(tmp_path):
    from experiments.runs import delete_run

    for name in ("keep", "gone"):
        store = RunStore.named(name, tmp_path)
        store.start({"config": {}, "config_hash": name, "n_cells": 1})
        store.finish("finished")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    delete_run("gone", tmp_path)
    assert not (tmp_path / "gone").exists() and (tmp_path / "keep" / "manifest.json").is_file()
    assert [r["name"] for r in list_runs(tmp_path)] == ["keep"]
    for bad in ("gone", "notes", "../keep", "keep/..", "", ".hidden"):
        with pytest.raises(WorkbenchError, match="no run"):
            delete_run(bad, tmp_path)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"
    held = RunStore.named("busy", tmp_path)
    held.start({"config": {}, "config_hash": "b", "n_cells": 1})  # a live writer holds its lock
    with pytest.raises(WorkbenchError, match="being written"):
        delete_run("busy", tmp_path)
    held.finish("finished")
    delete_run("busy", tmp_path)
    assert [r["name"] for r in list_runs(tmp_path)] == ["keep"]


def test_finetune_arms_are_one_run_reopened_from_disk_and_a_stop_reads_interrupted(tmp_path):
    """The app's finetunes: the arms are one run of kind "reuse" that load_arms reopens with the
    numbers run_arms returned; Cancel (RunStopped from the progress callback) leaves it and its
    arm "interrupted", not "failed"."""
    from experiments.finetune import FinetuneConfig
    from experiments.finetune.reuse import load_arms, run_arms
    from experiments.runs import RunStopped

    common = dict(model="config:gpt2-tiny", task="price_tagging", method="loreft", positions="l1", rank=2, steps=4,
                  n_train=16, n_eval=16, batch_size=8, eval_every=2)
    arms = {"DAS init": FinetuneConfig(**common), "random init": FinetuneConfig(**common, seed=1)}
    results = run_arms(arms, out_root=tmp_path / "ft", about={"search_run": "s", "subspace": "L0__V1"})
    listed = list_runs(tmp_path, kind="reuse")
    assert [(r["name"], r["status"]) for r in listed] == [("ft", "finished")]
    again = load_arms(tmp_path / "ft")
    assert list(again) == ["DAS init", "random init"]
    for label in arms:
        assert again[label].final_accuracy == results[label].final_accuracy
        assert again[label].loss_curve == results[label].loss_curve
    assert list_runs(tmp_path / "ft") != []  # each arm is a finetune run inside it, not listed at the top

    def stop_at_step_2(label, step, n_steps, loss):
        if step == 2:
            raise RunStopped()

    with pytest.raises(RunStopped):
        run_arms(arms, out_root=tmp_path / "stopped", progress=stop_at_step_2)
    assert json.loads((tmp_path / "stopped" / "manifest.json").read_text())["status"] == "interrupted"
    assert json.loads((tmp_path / "stopped" / "DAS_init" / "manifest.json").read_text())["status"] == "interrupted"
    assert load_arms(tmp_path / "stopped") == {}
