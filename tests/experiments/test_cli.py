"""The `dii` CLI end to end on a tiny config, and config validation messages."""

import json
from pathlib import Path

import pytest

from causal.errors import WorkbenchError
from experiments.cli import COMMANDS, build_parser, main
from experiments.search import SearchConfig, load_config
from interventions import Subspace

CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "configs"

TINY = """
name = "tiny"
model = "zoo:hierarchical_equality"
task = "hierarchical_equality"
layers = [0, 2]
k = 2
steps = 10
n_train = 200
n_test = 100
seed = 1
controls = ["random_rotation"]
"""


@pytest.fixture
def tiny_config(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY)
    return p


def test_search_runs_show_export_end_to_end(tiny_config, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["search", str(tiny_config), "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "run 'tiny' written" in out and "V1" in out
    run_dir = runs / "tiny"
    rows = json.loads((run_dir / "results.json").read_text())
    assert {r["method"] for r in rows} == {"das", "random_rotation"}
    assert len(list((run_dir / "cells").glob("*.json"))) == 4

    assert main(["runs", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "finished" in out and "4/4" in out

    assert main(["show", "tiny", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:4] == ["variable", "best", "site", "das"] and "random_rotation" in out[1]
    best_v1 = max((r for r in rows if r["variable"] == "V1" and r["method"] == "das"), key=lambda r: r["iia"])
    line = next(line for line in out if line.startswith("V1 "))
    assert best_v1["site"] in line and f"{best_v1['iia']:.3f}" in line

    assert main(["show", "tiny", "--all", "--runs-dir", str(runs)]) == 0
    assert len([line for line in capsys.readouterr().out.splitlines() if "block_output" in line]) == len(rows)

    dest = tmp_path / "exported"
    assert main(["export", "tiny", "--site", "L0.block_output.vector", "--variable", "V2", "--out", str(dest),
                 "--runs-dir", str(runs)]) == 0
    sub = Subspace.load(dest)
    assert sub.variables == ["V2"] and sub.k == 2 and sub.site == "L0.block_output.vector"
    # a second export into the same, now non-empty directory is refused
    assert main(["export", "tiny", "--site", "L0.block_output.vector", "--variable", "V2", "--out", str(dest),
                 "--runs-dir", str(runs)]) == 2
    assert "not empty" in capsys.readouterr().err

    # the same run again needs --resume; with it, every cell is skipped
    assert main(["search", str(tiny_config), "--runs-dir", str(runs)]) == 2
    assert "--resume" in capsys.readouterr().err
    before = (run_dir / "results.json").read_text()
    assert main(["search", str(tiny_config), "--runs-dir", str(runs), "--resume"]) == 0
    assert (run_dir / "results.json").read_text() == before


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace('controls = ["random_rotation"]', 'controls = ["random_rotations"]'))
    assert main(["search", str(bad), "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "'controls'" in err and "random_rotation" in err and "Traceback" not in err
    assert main(["show", "nope", "--runs-dir", str(tmp_path)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    assert main(["export", "nope", "--site", "x", "--variable", "V1", "--out", str(tmp_path / "o"),
                 "--runs-dir", str(tmp_path)]) == 2
    assert main(["search", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_subcommand_table_is_extensible():
    assert {"search", "runs", "show", "export"} <= set(COMMANDS)
    sub = build_parser()._subparsers._group_actions[0].choices
    assert set(COMMANDS) == set(sub)


SEARCH_CONFIGS = ["hierarchical_equality", "hierarchical_equality_tokens", "price_tagging", "arithmetic_carry", "mcqa"]


@pytest.mark.parametrize("path", [CONFIGS / f"{n}.toml" for n in SEARCH_CONFIGS], ids=lambda p: p.stem)
def test_example_configs_are_valid(path):
    cfg = load_config(path)
    assert cfg.task in path.stem or cfg.model.endswith(cfg.task)


BASE = dict(model="zoo:hierarchical_equality", task="hierarchical_equality")


@pytest.mark.parametrize("field,value,expect", [
    ("method", "banana", r"'method'.*\['das', 'boundless', 'dbm', 'pca', 'dbm_pca'\]"),
    ("controls", ["banana"], r"'controls'.*'random_rotation'"),
    ("k", True, r"'k'.*valid integer"),
    ("k", 0, r"'k'.*positive integer"),
    ("layers", [], r"'layers'.*empty"),
    ("layers", "some", r"'layers'.*\"all\""),
    ("components", ["resid"], r"'components'.*block_output"),
    ("task", "sorting", r"'task'.*hierarchical_equality"),
    ("hypothesis", "third", r"'hypothesis'.*both_equalities"),
    ("variables", ["V3"], r"'variables'.*\['V1', 'V2'\]"),
    ("positions", ["middle"], r"'positions'.*'last'"),
    ("lr", -1, r"'lr'"),
    ("name", "../x", r"'name'"),
    ("disjoint_on", ["V1"], r"'disjoint_on'.*\['a', 'b', 'c', 'd'\]"),
])
def test_config_errors_name_the_field(field, value, expect):
    with pytest.raises(WorkbenchError, match=expect):
        SearchConfig(**{**BASE, field: value})


def test_unknown_and_missing_fields(tmp_path):
    with pytest.raises(WorkbenchError, match=r"unknown config field\(s\) \['layer'\]"):
        SearchConfig.from_dict({**BASE, "layer": 3})
    with pytest.raises(WorkbenchError, match="'model' is missing"):
        SearchConfig.from_dict({"task": "hierarchical_equality"})
    p = tmp_path / "broken.toml"
    p.write_text("model = ")
    with pytest.raises(WorkbenchError, match="not valid TOML"):
        load_config(p)


def test_config_hash_names_the_run():
    a = SearchConfig(**BASE)
    b = SearchConfig(**{**BASE, "name": None})
    c = SearchConfig(**{**BASE, "k": 5})
    assert a.run_name == b.run_name == f"hierarchical_equality-{a.hash()}"
    assert a.hash() != c.hash()
    assert SearchConfig(**{**BASE, "name": "mine"}).hash() == a.hash()  # the name does not change what is computed


def test_the_loss_default_changed_so_old_runs_keep_their_hash_and_new_ones_get_another():
    """Runs made before `loss_over` existed trained over the vocabulary: that value is left
    out of the hash (their run names stay), and the new default (answers) is not, so an old
    run directory is never resumed with the other loss."""
    import hashlib
    import json

    old = SearchConfig(**{**BASE, "loss_over": "vocabulary"})
    d = old.to_dict()
    d.pop("name")
    assert d["k"] == "auto"
    d["k"] = 4  # k's old default: 'auto' gives two-valued variables 4, and hashes as it
    for f in SearchConfig.HASH_HISTORY:  # the hash as computed before the field existed
        if f != "loss_over" and d[f] == SearchConfig.model_fields[f].get_default(call_default_factory=True):
            d.pop(f)
    d.pop("loss_over")
    assert old.hash() == hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
    assert SearchConfig(**BASE).loss_over == "answers" and SearchConfig(**BASE).hash() != old.hash()


def test_a_form_gets_every_bad_field_at_once_and_the_toml_it_shows_runs_the_same_config(tmp_path):
    """What the app's forms do: check_values names each bad field (not only the first), and a
    valid config's to_toml() is a file the CLI loads to the same config (the same hash)."""
    from experiments.search import SearchConfig, load_config
    from experiments.finetune.config import FinetuneConfig, load_finetune_config

    config, errors = SearchConfig.check_values(dict(model="zoo:hierarchical_equality", task="hierarchical_equality",
                                                    batch_size=0, lr=0.0, k=0, n_test=-1))
    assert config is None and set(errors) == {"batch_size", "lr", "k", "n_test"}
    assert "got 0" in errors["batch_size"] and "positive number" in errors["lr"]
    config, errors = SearchConfig.check_values(dict(model="zoo:hierarchical_equality", task="hierarchical_equality",
                                                    layers=[0, 1], k=2, steps=30, controls=["random_rotation"]))
    assert errors == {}
    path = tmp_path / "search.toml"
    path.write_text(config.to_toml())
    assert load_config(path).hash() == config.hash()

    ft = FinetuneConfig(model="zoo:price_tagging", task="price_tagging", variant={"lower_shift": 2}, steps=7)
    path = tmp_path / "finetune.toml"
    path.write_text(ft.to_toml())
    assert load_finetune_config(path).hash() == ft.hash()
