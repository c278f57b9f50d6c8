"""The four run-store faults a new user hit, each now refused or reported correctly:
two processes writing one run, a resume after the model's weights changed, a killed run
that read "running" forever, and different flags on each subcommand."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from causal.errors import WorkbenchError
from experiments.cli import build_parser
from experiments.runs import RunStore, list_runs, load_run
from experiments.search import AlignmentSearch
from interventions import load_model

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(layers=[0], k=2, steps=5, n_train=200, n_test=100, batch_size=32)

HOLDER = textwrap.dedent('''
    import sys, time
    sys.path.insert(0, {root!r})
    from experiments.runs import RunStore
    store = RunStore({path!r})
    store.start({{"config": {{"seed": 0}}, "config_hash": "seed0"}}, kind="search")
    print("started", flush=True)
    time.sleep(60)
''')


def _hold(path: Path) -> subprocess.Popen:
    """Another process that has started the run and is still writing it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=str(ROOT), path=str(path))],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    return proc


@pytest.fixture(scope="module")
def mlp(zoo_model):
    return load_model(str(zoo_model("hierarchical_equality")), device="cpu")


def test_two_runs_under_one_name_are_refused_while_the_first_writes(tmp_path, mlp):
    run_dir = tmp_path / "same-name"
    proc = _hold(run_dir)
    try:
        search = AlignmentSearch(mlp, "hierarchical_equality", seed=1, **TINY)
        with pytest.raises(WorkbenchError, match=r"being written by another process \(pid \d+"):
            search.run(run_dir=run_dir)
        assert not (run_dir / "cells").exists() or not list((run_dir / "cells").iterdir())  # nothing mixed in
    finally:
        proc.kill()
        proc.wait()


def test_a_rerun_with_another_seed_is_refused_after_the_first_finished(tmp_path, mlp):
    run_dir = tmp_path / "r"
    AlignmentSearch(mlp, "hierarchical_equality", seed=0, **TINY).run(run_dir=run_dir)
    for resume in (False, True):
        with pytest.raises(WorkbenchError, match="another config"):
            AlignmentSearch(mlp, "hierarchical_equality", seed=1, **TINY).run(run_dir=run_dir, resume=resume)
    assert {r["seed"] for r in load_run(run_dir).rows} == {0}


def test_resume_after_the_weights_changed_is_refused_naming_both_fingerprints(tmp_path, mlp, zoo_model):
    run_dir = tmp_path / "r"
    search = AlignmentSearch(mlp, "hierarchical_equality", **TINY)
    search.run(run_dir=run_dir)
    other = load_model(str(zoo_model("hierarchical_equality", seed=1)), device="cpu")
    assert other.fingerprint != mlp.fingerprint
    with pytest.raises(WorkbenchError, match=f"fingerprint {mlp.fingerprint}.*now has {other.fingerprint}"):
        AlignmentSearch(other, "hierarchical_equality", config=search.config).run(run_dir=run_dir, resume=True)


def test_a_killed_run_reads_interrupted(tmp_path):
    run_dir = tmp_path / "killed"
    proc = _hold(run_dir)
    assert list_runs(tmp_path)[0]["status"] == "running"  # alive: its lock is held
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "running"  # what it left behind
    assert list_runs(tmp_path)[0]["status"] == "interrupted"
    assert load_run(run_dir).manifest["status"] == "interrupted"
    # and it can be resumed: the lock is free again
    RunStore(run_dir).start({"config": {"seed": 0}, "config_hash": "seed0"}, resume=True)


def test_every_run_writing_subcommand_takes_the_same_flags():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in ("search", "finetune", "compare"):
        flags = {s for a in sub.choices[name]._actions for s in a.option_strings}
        assert {"--runs-dir", "--name", "--out"} <= flags, name


def test_finetune_and_compare_runs_use_the_same_store(tmp_path):
    """A finetune written by the store lists with its kind and UTC times; a bad run name is refused."""
    store = RunStore(tmp_path / "ft")
    store.start({"config": {"task": "price_tagging", "method": "loreft"}, "config_hash": "h"}, kind="finetune")
    store.finish("finished")
    (row,) = list_runs(tmp_path)
    assert row["kind"] == "finetune" and row["status"] == "finished" and row["created"].endswith("+00:00")
    with pytest.raises(WorkbenchError, match="is a finetune run"):
        RunStore(tmp_path / "ft").start({"config": {}, "config_hash": "h"}, kind="compare")
    from experiments.runs import run_dir

    for name in ("../escape", "/abs", ".hidden"):
        with pytest.raises(WorkbenchError, match="no path separators"):
            run_dir("default", runs_dir=str(tmp_path), name=name)
    assert run_dir("mine", runs_dir=str(tmp_path)) == tmp_path / "mine"
