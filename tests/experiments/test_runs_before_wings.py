"""Runs made by the code before experiments/ was split into wings (tests/data/runs_before_wings:
a search with a Boundless DAS control and its old top-level `temperature`, a price-tagging
search, a finetune, a comparison and a reuse run, written by commit 1364655) still open in
the CLI, the readers and the app, and a search resumes under its own hash."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from experiments.cli import main

OLD = Path(__file__).resolve().parents[1] / "data" / "runs_before_wings"


@pytest.fixture
def runs(tmp_path):
    shutil.copytree(OLD, tmp_path / "runs")
    return tmp_path / "runs"


def test_every_old_run_lists_and_opens(runs, capsys):
    from experiments.finetune import FinetuneResult
    from experiments.finetune.reuse import load_arms
    from experiments.runs import list_runs, load_run

    listed = {r["name"]: r for r in list_runs(runs)}
    assert set(listed) == {"old-search", "old-pt", "old-finetune", "old-compare", "old-reuse"}
    assert all(r["status"] == "finished" for r in listed.values()), listed
    assert listed["old-compare"]["model"] == "config:gpt2-tiny" and listed["old-compare"]["kind"] == "compare"
    assert main(["show", "old-search", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "V1" in out and "vs boundless" in out
    assert load_run(runs / "old-search").best("V1")["iia"] is not None
    assert load_run(runs / "old-search").load_subspace("L0.block_output.vector", "V1").variables == ["V1"]
    comparison = load_run(runs / "old-compare").comparison()
    assert [r["method"] for r in comparison["summary"]] == ["loreft", "lora"] and "loreft" in comparison["curves"]
    assert FinetuneResult.from_dict(load_run(runs / "old-finetune").finetune_result()).steps == 3
    arms = load_arms(runs / "old-reuse")
    assert set(arms) == {"DAS init", "random init"} and all(a.steps == 5 for a in arms.values())


def test_an_old_search_config_resumes_its_run_under_its_own_hash(runs, capsys):
    """The old config sets `temperature` at the top level; it now lives in [method_options.boundless],
    and the hash is the one the run was made under, so --resume finds every cell done."""
    from experiments.search import load_config

    config = load_config(OLD / "old-search.toml")
    assert config.method_options == {"boundless": {"temperature": [40.0, 0.2]}}
    manifest = json.loads((runs / "old-search" / "manifest.json").read_text())
    assert config.hash() == manifest["config_hash"]
    assert main(["search", str(OLD / "old-search.toml"), "--runs-dir", str(runs), "--resume"]) == 0
    assert json.loads((runs / "old-search" / "manifest.json").read_text())["status"] == "finished"
    assert "run 'old-search' written" in capsys.readouterr().out


def test_the_app_opens_an_old_search_run(runs, monkeypatch):
    from tests.app.app_helpers import no_exceptions, page

    monkeypatch.setenv("DII_RUNS", str(runs))
    at = page("results")
    at.query_params["run"] = "old-search"
    no_exceptions(at.run())
    assert any("Best site for V1" in m.value for m in at.markdown)
