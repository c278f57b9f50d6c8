"""Faults a run survives: damaged files on resume, a runs folder that is a file, a damaged
manifest field, --resume of a run that does not exist, a full disk in the middle of every run
kind, and kill -9 of a finetune, a comparison and a GGUF conversion, each run again to the
same results as an uninterrupted run."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.cli import main

ROOT = Path(__file__).resolve().parents[2]
SEARCH = """name = "s"
model = "zoo:hierarchical_equality"
task = "hierarchical_equality"
layers = [0, 1]
variables = ["V1"]
steps = 10
n_train = 300
n_test = 200
"""


def _search(tmp_path, *extra) -> int:
    (tmp_path / "s.toml").write_text(SEARCH)
    return main(["search", str(tmp_path / "s.toml"), "--runs-dir", str(tmp_path / "runs"), *extra])


@pytest.mark.parametrize("damage", ["not json", "no rows"])
def test_a_damaged_cell_is_set_aside_and_computed_again_on_resume(tmp_path, capsys, zoo_model, damage):
    zoo_model("hierarchical_equality")
    assert _search(tmp_path) == 0
    run = tmp_path / "runs" / "s"
    before = json.loads((run / "results.json").read_text())
    cell = run / "cells" / "das__L1.block_output.vector.json"
    cell.write_text("{not json" if damage == "not json" else json.dumps({"cell": cell.stem, "curves": {}}))
    capsys.readouterr()
    assert _search(tmp_path, "--resume") == 0
    out = capsys.readouterr()
    assert "computed again" in out.err + out.out and "Traceback" not in out.err
    assert "no rows" not in damage or "has no 'rows'" in out.err + out.out
    assert [p.name.split(".damaged-")[0] for p in (run / "cells").glob("*.damaged-*")] == [cell.name]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "finished"
    after = json.loads((run / "results.json").read_text())
    assert [(r["cell"], r["iia"], r["test_correct"]) for r in after] == [(r["cell"], r["iia"], r["test_correct"])
                                                                        for r in before]


def test_a_runs_folder_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("notes")
    for where in ("a.txt", "a.txt/inside"):
        assert main(["runs", "--runs-dir", str(tmp_path / where)]) == 2
        assert "a run store is a folder" in capsys.readouterr().err
    assert main(["runs", "--runs-dir", str(tmp_path / "missing")]) == 0
    assert "no runs in" in capsys.readouterr().out


def test_a_damaged_manifest_field_makes_the_run_unreadable_with_the_reason(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"config": {"task": "ioi"}, "status": "finished", "n_cells": "lots"}))
    assert main(["runs", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "r: unreadable" in out and "'n_cells' is 'lots'" in out and "2/lots" not in out


def test_resume_of_a_run_that_does_not_exist_is_refused(tmp_path, capsys):
    (tmp_path / "s.toml").write_text(SEARCH)
    assert main(["search", str(tmp_path / "s.toml"), "--runs-dir", str(tmp_path / "runs"), "--resume",
                 "--name", "misspelt"]) == 2
    err = capsys.readouterr().err
    assert "no run 'misspelt'" in err and "drop --resume to start it" in err
    assert not (tmp_path / "runs" / "misspelt").exists()


# ---------------------------------------------------------------- a full disk
DATA = ROOT / "experiments" / "data" / "instructions_tiny.jsonl"
FINETUNE = dict(model="config:gpt2-tiny", data=str(DATA), steps=3, batch_size=8, layers=[1], rank=2, positions="l1")


def _disk_fills_after(monkeypatch, writes: int) -> None:
    """Every file we write is fsynced before its rename (causal.io): after `writes` of them the
    disk is full, and each later write raises ENOSPC, as a real full disk would."""
    real, count = os.fsync, {"n": 0}

    def fsync(fd):
        count["n"] += 1
        if count["n"] > writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def _saves_fill_the_disk(monkeypatch) -> None:
    """A model's save_pretrained writes part of a file, then the disk is full."""
    import transformers

    def save(self, directory, *args, **kwargs):
        Path(directory, "model.safetensors").write_bytes(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", save)


def _settled(folder: Path) -> None:
    """Nothing half-written stays, and no run is left reading "running"."""
    from experiments.runs import list_runs

    assert not [p for p in folder.rglob("*") if ".tmp" in p.name], [str(p) for p in folder.rglob("*.tmp*")]
    for root in {p.parent.parent for p in folder.rglob("manifest.json")}:
        assert all(r["status"] != "running" for r in list_runs(root)), list_runs(root)


def test_a_full_disk_in_a_search(tmp_path, capsys, monkeypatch, zoo_model):
    zoo_model("hierarchical_equality")
    _disk_fills_after(monkeypatch, 4)  # the manifest, then part of the first cell
    assert _search(tmp_path) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and f"free some space in {tmp_path / 'runs'}" in err and "Traceback" not in err
    _settled(tmp_path)
    monkeypatch.undo()  # space again: the run resumes and finishes
    assert _search(tmp_path, "--resume") == 0
    assert json.loads((tmp_path / "runs" / "s" / "manifest.json").read_text())["status"] == "finished"


def test_a_full_disk_in_a_finetune_and_a_comparison(tmp_path, monkeypatch):
    from causal.errors import WorkbenchError
    from experiments.finetune import FinetuneConfig, finetune
    from experiments.finetune.compare import CompareConfig, compare

    _disk_fills_after(monkeypatch, 1)  # the manifest; then the trained artifact
    with pytest.raises(WorkbenchError, match=f"cannot write {tmp_path / 'ft'}.*No space left"):
        finetune(FinetuneConfig(**FINETUNE), out_dir=tmp_path / "ft", verbose=False)
    monkeypatch.undo()
    _disk_fills_after(monkeypatch, 1)  # the manifest; then its model record after the first method
    with pytest.raises(WorkbenchError, match=f"cannot write {tmp_path / 'cmp'}.*No space left"):
        compare(CompareConfig(finetune={k: v for k, v in FINETUNE.items()}, methods=["loreft", "lora"]),
                out_dir=tmp_path / "cmp")
    _settled(tmp_path)
    assert not (tmp_path / "ft" / "artifact").exists() and not (tmp_path / "cmp" / "compare.json").exists()


def test_a_full_disk_in_reuse_arms(tmp_path, monkeypatch):
    from causal.errors import WorkbenchError
    from experiments.finetune.reuse import reuse_arms, run_arms
    from experiments.models import config_model_dir
    from experiments.finetune import jsonl_examples, FinetuneConfig, words_of
    from interventions import RotatedSubspace, Site, Subspace, load_model

    train, ev = jsonl_examples(FinetuneConfig(**FINETUNE))
    model = load_model(str(config_model_dir("gpt2-tiny", words_of(train + ev), 0)), device="cpu")
    Subspace.from_module(RotatedSubspace(model.hidden_size, 2), model, Site(1)).save(tmp_path / "sub")
    arms = reuse_arms(tmp_path / "sub", **{k: v for k, v in FINETUNE.items()})
    _disk_fills_after(monkeypatch, 3)  # the reuse manifest, the first arm's, then its artifact
    with pytest.raises(WorkbenchError, match="No space left"):
        run_arms(arms, out_root=tmp_path / "reuse")
    _settled(tmp_path)


def test_a_full_disk_while_the_zoo_saves_a_model(tmp_path, monkeypatch):
    from causal.errors import WorkbenchError
    from experiments.zoo import cache
    from tests.experiments.test_zoo import tiny_recipe

    monkeypatch.setenv("DII_CACHE", str(tmp_path))
    monkeypatch.setattr(cache, "_recipes_for", lambda task: [tiny_recipe()])
    _saves_fill_the_disk(monkeypatch)
    with pytest.raises(WorkbenchError, match=f"cannot write the zoo model to {tmp_path / 'zoo'}.*No space left"):
        cache.get_model("hierarchical_equality", seed=0, progress=False)
    assert list((tmp_path / "zoo").iterdir()) == []  # neither the model nor its temporary folder


def test_a_full_disk_while_a_gguf_conversion_saves(tmp_path, monkeypatch):
    """The dequantization is replaced by a tiny model (the save is what is under test)."""
    import transformers

    from causal.errors import WorkbenchError
    from interventions import gguf, load_model
    from tests.real.conftest import SMOLLM2

    monkeypatch.setenv("DII_CACHE", str(tmp_path))
    tiny = transformers.LlamaForCausalLM(transformers.LlamaConfig(num_hidden_layers=1, hidden_size=8,
                                                                  intermediate_size=8, num_attention_heads=2))
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: tiny)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: None)
    _saves_fill_the_disk(monkeypatch)
    with pytest.raises(WorkbenchError, match=f"cannot write the converted {SMOLLM2.name} to {tmp_path / 'gguf'}"):
        load_model(str(SMOLLM2), device="cpu")
    assert [p.name for p in gguf.cache_root().iterdir()] == [".locks"]


# ---------------------------------------------------------------- kill -9, then run again
def _kill_when(cmd: list[str], ready, env: dict, timeout: float = 300) -> None:
    """Start `cmd`, SIGKILL it once `ready()` holds (it must not have ended first)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"it ended before the chosen point: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "the chosen point never came"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _dii(*args, env) -> None:
    proc = subprocess.run([sys.executable, "-m", "experiments.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_a_killed_finetune_reads_interrupted_and_a_rerun_equals_an_uninterrupted_one(tmp_path):
    from experiments.runs import load_run

    toml = tmp_path / "ft.toml"
    toml.write_text(f'model = "config:gpt2-tiny"\ndata = "{DATA}"\nsteps = 60\nbatch_size = 8\nrank = 2\n'
                    'eval_every = 20\nname = "ft"\n')
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    _kill_when([sys.executable, "-m", "experiments.cli", "finetune", str(toml), "--runs-dir", str(killed)],
               lambda: (killed / "ft" / "manifest.json").is_file(), _env())
    assert load_run(killed / "ft").manifest["status"] == "interrupted"
    _dii("finetune", str(toml), "--runs-dir", str(killed), env=_env())
    _dii("finetune", str(toml), "--runs-dir", str(whole), env=_env())
    again, once = (load_run(d / "ft").finetune_result() for d in (killed, whole))
    assert again["loss_curve"] == once["loss_curve"] and again["eval_curve"] == once["eval_curve"]
    assert load_run(killed / "ft").manifest["status"] == "finished"


def test_a_killed_comparison_reads_interrupted_and_a_rerun_equals_an_uninterrupted_one(tmp_path):
    from experiments.runs import load_run

    toml = tmp_path / "c.toml"
    toml.write_text(f'[compare]\nname = "c"\nmethods = ["loreft", "lora", "direft"]\nseeds = [0]\n[finetune]\n'
                    f'model = "config:gpt2-tiny"\ndata = "{DATA}"\nsteps = 30\nbatch_size = 8\n')
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    _kill_when([sys.executable, "-m", "experiments.cli", "compare", str(toml), "--runs-dir", str(killed)],
               lambda: (killed / "c" / "compare.json").is_file(), _env())  # after the first method
    assert load_run(killed / "c").manifest["status"] == "interrupted"
    _dii("compare", str(toml), "--runs-dir", str(killed), env=_env())
    _dii("compare", str(toml), "--runs-dir", str(whole), env=_env())
    keys = ("method", "seed", "accuracy", "eval_loss", "final_train_loss", "trainable_params")
    again, once = ([{k: r[k] for k in keys} for r in load_run(d / "c").comparison()["rows"]] for d in (killed, whole))
    assert again == once and len(once) == 3
