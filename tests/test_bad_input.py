"""Bad input gets one clear error of our own type that names the fix, and nothing is written:
configs (search and finetune), causal models, task options, run directories, and the config
loaders fed random TOML-shaped tables (a property test: each loads or raises ConfigError,
never anything else)."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from causal import CausalModel, CausalModelError
from experiments.search import SearchConfig, load_config
from experiments.errors import ConfigError
from interventions import InterventionError
from experiments.finetune.config import FinetuneConfig, load_finetune_config

SEARCH = dict(model="zoo:hierarchical_equality", task="hierarchical_equality")
FINETUNE = dict(model="zoo:price_tagging", task="price_tagging")


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


# ---------------------------------------------------------------- configs

SEARCH_CASES = [
    ({"device": "banana"}, "device", "torch does not know"),
    ({"device": ""}, "device", "use 'auto', 'cpu'"),
    ({"device": "tpu"}, "device", "use 'auto', 'cpu'"),
    ({"model_seed": -1}, "model_seed", ">= 0"),
    ({"seed": -3}, "seed", ">= 0"),
    ({"seeds": [0, -1]}, "seeds", ">= 0"),
    ({"seeds": [1, 1]}, "seeds", "distinct"),
    ({"seeds": []}, "seeds", "distinct"),
    ({"n_train": 10**6}, "n_train", "at most 500,000"),
    ({"n_test": 10**7}, "n_test", "at most 500,000"),
    ({"n_train": True}, "n_train", "valid integer"),
    ({"n_test": False}, "n_test", "valid integer"),
    ({"k": True}, "k", "valid integer"),
    ({"epochs": True}, "epochs", "valid integer"),
    ({"batch_size": 0}, "batch_size", "positive integer"),
    ({"epochs": 0}, "epochs", "positive integer"),
    ({"n_train": 0}, "n_train", "positive integer"),
    ({"k": 0}, "k", "positive integer"),
    ({"lr": 0}, "lr", "positive number"),
    ({"lr": -1.0}, "lr", "positive number"),
    ({"steps": 0}, "steps", "positive integer"),
    ({"lr_schedule": "sometimes"}, "lr_schedule", "allowed values"),
    ({"method": "magic"}, "method", "allowed values"),
    ({"parametrization": "euler"}, "parametrization", "allowed values"),
    ({"hypothesis": "nope"}, "hypothesis", "allowed values"),
    ({"variables": ["Z"]}, "variables", "allowed values"),
    ({"positions": ["nowhere"]}, "positions", "allowed values"),
    ({"task": "sorting"}, "task", "hierarchical_equality"),
    ({"task": "missing.toml"}, "task", "does not exist"),
    ({"task": "nofile.py:build"}, "task", "does not exist"),
    ({"task": "nofile.py:"}, "task", "builder function's name"),
    ({"task_options": {"n_objectz": 3}}, "task_options", "it takes ['n_objects', 'dim', 'seed']"),
    ({"task_options": {"n_objects": "many"}}, "task", "raised TypeError"),
    ({"vary_model_seed": True}, "vary_model_seed", "set 'seeds' too"),
    ({"colour": "red"}, "colour", "unknown config field"),
    ({"contrastive": "yes"}, "contrastive", "valid boolean"),
    ({"name": "../../x"}, "name", "letters, digits"),
    ({"name": "/abs"}, "name", "letters, digits"),
]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("cls, base", [(SearchConfig, SEARCH), (FinetuneConfig, FINETUNE)])
def test_cuda_on_a_machine_without_cuda_names_the_fix(cls, base):
    with pytest.raises(ConfigError, match=r"'device'.*no CUDA device; use 'auto' or 'cpu'"):
        cls(**{**base, "device": "cuda"})


FINETUNE_CASES = [
    ({"device": "banana"}, "device", "torch does not know"),
    ({"model_seed": -1}, "model_seed", ">= 0"),
    ({"seed": -1}, "seed", ">= 0"),
    ({"n_train": 10**9}, "n_train", "at most 500,000"),
    ({"n_eval": 10**6}, "n_eval", "at most 500,000"),
    ({"n_train": True}, "n_train", "valid integer"),
    ({"rank": 0}, "rank", "positive integer"),
    ({"steps": 0}, "steps", "positive integer"),
    ({"task_options": {"lower": 1}}, "task_options", "it takes ['max_price']"),
    ({"hypothesis": "nope"}, "hypothesis", "allowed values"),
    ({"task": None}, "task", "exactly one of 'task'"),
    ({"method": "magic"}, "method", "allowed"),
    ({"freeze_rotation": True, "method": "lora"}, "init_from", "use method 'loreft'"),
]


CONFIG_CASES = [(SearchConfig, SEARCH, *c) for c in SEARCH_CASES] + [(FinetuneConfig, FINETUNE, *c) for c in FINETUNE_CASES]


@pytest.mark.parametrize("cls, base, change, field, fragment", CONFIG_CASES,
                         ids=[f"{c[0].__name__}-{c[2]}" for c in CONFIG_CASES])
def test_bad_config_fields(tmp_path, cls, base, change, field, fragment):
    before = files_under(tmp_path)
    with pytest.raises(ConfigError) as e:
        cls(**{**base, **change})
    message = str(e.value)
    assert field in message and fragment in message, message
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("text, fragment", [
    ("model = [", "not valid TOML"),
    ("[search]\nmodel = 1\n[other]\nx = 2", "unknown config field"),
    ('task = "hierarchical_equality"', "'model' is missing"),
    ('model = "zoo"', "'task' is missing"),
    ('model = "zoo"\ntask = "hierarchical_equality"\n[task_options]\nn_objects = "x"', "raised TypeError"),
])
def test_bad_config_files(tmp_path, text, fragment):
    path = tmp_path / "c.toml"
    path.write_text(text)
    before = files_under(tmp_path)
    with pytest.raises(ConfigError, match=fragment):
        load_config(path)
    assert files_under(tmp_path) == before


def test_a_missing_config_file_names_the_path(tmp_path):
    with pytest.raises(ConfigError, match=r"does not exist; pass the path of a \.toml config"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"does not exist"):
        load_finetune_config(tmp_path / "nope.toml")


# ---------------------------------------------------------------- causal models

MODEL_CASES = [
    (lambda: CausalModel(["a", "b"], {"b": ["a"]}, {"b": lambda a: a}), "variables must be a dict"),
    (lambda: CausalModel({"a": [0, 1], "b": [0, 1]}, [("b", "a")], {"b": lambda a: a}), "parents must be a dict"),
    (lambda: CausalModel({"a": [0, 1], "b": [0, 1]}, {"b": ["a"]}, [lambda a: a]), "mechanisms must be a dict"),
    (lambda: CausalModel({"a": [0, 1], "b": [0, 1], "c": [0]}, {"c": "ab"}, {"c": lambda a, b: 0}),
     "give a list of variable names, e.g. ['a', 'b']"),
    (lambda: CausalModel({}, {}, {}), "no variables"),
    (lambda: CausalModel({"a": "xy", "b": [0]}, {"b": ["a"]}, {"b": lambda a: 0}), "must be a list of values"),
    (lambda: CausalModel({"a": 5, "b": [0]}, {"b": ["a"]}, {"b": lambda a: 0}), "must be a list of values"),
    (lambda: CausalModel({"a": [], "b": [0]}, {"b": ["a"]}, {"b": lambda a: 0}), "no values"),
    (lambda: CausalModel({"a": [0, 1], "b": [0, 1]}, {"b": ["a"]}, {"b": lambda x, y: x}),
     "cannot take its parents ['a'] by name"),
    (lambda: CausalModel({"a": [0, 1], "b": [0, 1]}, {"b": ["a"]}, {"b": lambda z: z}), "write it as lambda a: ..."),
    (lambda: CausalModel({"a": [0, 1], "b": [0, 1], "c": [0, 1]}, {"c": ["a", "b"]}, {"c": lambda a: a}),
     "cannot take its parents ['a', 'b']"),
    (lambda: CausalModel({"a": [0, 1], "b": [0, 1]}, {"b": ["q"]}, {"b": lambda q: q}), "unknown parent 'q'"),
    (lambda: CausalModel({"a": [0, 1], "b": [0, 1]}, {"b": ["a", "a"]}, {"b": lambda a: a}), "lists a parent twice"),
    (lambda: CausalModel({"a": [0, 1], "b": [0, 1]}, {"b": ["a"]}, {}), "has parents but no mechanism"),
    (lambda: CausalModel({"a": [0, 1], "b": [0, 1]}, {"b": ["a"]}, {"b": 3}), "is not callable"),
    (lambda: CausalModel({"a": [0, 1], "b": [0, 1]}, {"b": ["a"]}, {"b": lambda a: a, "a": lambda: 0}),
     "input variable 'a'"),
    (lambda: CausalModel({"a": [0, 1], "b": [0, 1], "c": [0, 1]}, {"b": ["c"], "c": ["b"]},
                         {"b": lambda c: c, "c": lambda b: b}), "cycle"),
    (lambda: CausalModel({"a": [0, 1]}, {"z": ["a"]}, {}), "unknown variable 'z'"),
]


@pytest.mark.parametrize("build, fragment", MODEL_CASES, ids=[f"model{i}" for i in range(len(MODEL_CASES))])
def test_bad_causal_models_fail_when_built(build, fragment):
    with pytest.raises(CausalModelError) as e:
        build()
    assert fragment in str(e.value), str(e.value)


def test_a_mechanism_with_keyword_catchall_is_accepted():
    model = CausalModel({"a": [0, 1], "b": [0, 1]}, {"b": ["a"]}, {"b": lambda **kw: kw["a"]})
    assert model.run({"a": 1})["b"] == 1


# ---------------------------------------------------------------- run directories

GOOD_ROW = {"variable": "V1", "method": "das", "iia": 0.9, "layer": 0, "position": None, "site": "L0"}
MANIFESTS = [
    ("[1, 2]", "it is a list, not a JSON object"),
    ('{"config": {"task": "x"}, "created": 5}', "'created' is 5"),
    ('{"config": "abc", "created": "2026-01-01"}', "'config' is 'abc'"),
    ("", "Expecting value"),
    ('{"conf', "Unterminated string"),
    ("{}", "the manifest is empty"),
    ('{"config": {}, "status": 3}', "'status' is 3"),
]


@pytest.mark.parametrize("text, fragment", MANIFESTS, ids=[f"manifest{i}" for i in range(len(MANIFESTS))])
def test_unreadable_manifests_are_listed_with_the_reason_and_the_rest_still_listed(tmp_path, capsys, text, fragment):
    from experiments.cli import main

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text(text)
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "manifest.json").write_text(json.dumps(
        {"config": {"task": "ioi", "method": "das"}, "created": "2026-01-01T00:00:00+00:00", "status": "finished"}))
    (tmp_path / "good" / "results.json").write_text(json.dumps([GOOD_ROW]))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert main(["runs", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "good" in out and "bad: unreadable" in out and fragment in out, out
    assert main(["show", "bad", "--runs-dir", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "unreadable" in err and "Traceback" not in err, err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("rows, fragment", [
    ([{"method": "das", "iia": 0.5}], "has no 'variable'"),
    ([{**GOOD_ROW, "iia": "0.9"}], "'iia' is '0.9'"),
    ([{**GOOD_ROW, "iia": True}], "'iia' is True"),
    ([3], "row 0: it is a int, not a JSON object"),
    ({"rows": []}, "not a list of rows"),
])
def test_bad_result_rows_make_the_run_unreadable_with_the_reason(tmp_path, rows, fragment):
    from experiments.runs import load_run

    run = tmp_path / "r"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"config": {"task": "ioi"}, "created": "2026-01-01", "status": "finished"}))
    (run / "results.json").write_text(json.dumps(rows))
    with pytest.raises(ConfigError, match=fragment):
        load_run(run)


def test_a_cell_file_without_rows_names_the_cell_folder(tmp_path):
    from experiments.runs import load_run

    run = tmp_path / "r"
    (run / "cells").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"config": {"task": "ioi"}, "created": "2026-01-01", "status": "running"}))
    (run / "cells" / "das__L0.json").write_text(json.dumps({"cell": "das__L0"}))
    with pytest.raises(ConfigError, match=r"das__L0.json: it has no 'rows'.*--resume"):
        load_run(run)


# ---------------------------------------------------------------- config loaders, property-based

toml_scalars = st.one_of(st.booleans(), st.integers(-10**7, 10**7), st.floats(allow_nan=False, width=32),
                         st.text(max_size=12), st.sampled_from(["zoo", "all", "das", "cpu", "hierarchical_equality",
                                                                "price_tagging", "last", "loreft"]))
toml_values = st.recursive(toml_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                 st.dictionaries(st.text(min_size=1, max_size=8), inner,
                                                                                 max_size=3)), max_leaves=8)
SEARCH_KEYS = sorted(SearchConfig.model_fields) + ["colour"]
FINETUNE_KEYS = sorted(FinetuneConfig.model_fields) + ["colour"]


LOADERS = {"search": (load_config, SEARCH, SEARCH_KEYS), "finetune": (load_finetune_config, FINETUNE, FINETUNE_KEYS)}


@pytest.mark.parametrize("kind", LOADERS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), with_required=st.booleans())
def test_random_config_tables_load_or_raise_config_error(tmp_path, kind, data, with_required):
    load, required, keys = LOADERS[kind]
    table = data.draw(st.dictionaries(st.sampled_from(keys), toml_values, max_size=6))
    if with_required:
        table = {**required, **table}
    path = tmp_path / "random.toml"
    path.write_text(tomli_w.dumps(table))
    try:
        load(path)
    except ConfigError:
        pass


# ---------------------------------------------------------------- artifacts

def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    path.write_text(json.dumps(edit(data)))


def _drop(key):
    def edit(d):
        d.pop(key)
        return d
    return edit


def _drop_fingerprint(d):
    d["provenance"].pop("model_fingerprint")
    return d


REFT_CASES = [
    (_drop_fingerprint, "no provenance.model_fingerprint"),
    (_drop("rank"), "has no 'rank'"),
    (_drop("weights_sha256"), "has no 'weights_sha256'"),
    (lambda d: {**d, "rank": "4"}, "'rank' is '4', not a int"),
    (lambda d: {**d, "layers": 0}, "'layers' is 0, not a list"),
    (lambda d: {**d, "share_weights": 1}, "not a bool"),
    (lambda d: [d], "not a ReFT artifact"),
    (lambda d: {**d, "weights_sha256": "0" * 64}, "sha256 differs"),
]


@pytest.fixture(scope="module")
def reft_setup(tmp_path_factory):
    from tests.experiments.test_reft_artifact import DATA, _perturbed  # noqa: F401
    from experiments.models import config_model_dir
    from interventions import load_model

    words = [w for line in DATA.read_text().splitlines() for v in json.loads(line).values() for w in v.split()]
    model = load_model(str(config_model_dir("gpt2-tiny", words, seed=0)), device="cpu")
    return model, _perturbed


@pytest.mark.parametrize("edit, fragment", REFT_CASES, ids=[f"reft{i}" for i in range(len(REFT_CASES))])
def test_bad_reft_artifacts_are_refused_naming_the_problem(tmp_path, reft_setup, edit, fragment):
    from interventions.reft_artifact import load_reft

    model, perturbed = reft_setup
    perturbed(model).save(tmp_path / "a")
    _edit_json(tmp_path / "a" / "config.json", edit)
    with pytest.raises(InterventionError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        load_reft(tmp_path / "a", model=model)


def test_a_reft_artifact_with_nan_weights_is_refused(tmp_path, reft_setup):
    from safetensors.torch import load_file, save_file

    from interventions.reft_artifact import load_reft
    from interventions.artifact import _sha256

    model, perturbed = reft_setup
    perturbed(model).save(tmp_path / "a")
    weights = tmp_path / "a" / "interventions.safetensors"
    tensors = load_file(weights)
    first = next(iter(tensors))
    tensors[first][0] = float("nan")
    save_file(tensors, weights)
    _edit_json(tmp_path / "a" / "config.json", lambda d: {**d, "weights_sha256": _sha256(weights)})
    with pytest.raises(InterventionError, match="not finite floating point"):
        load_reft(tmp_path / "a", model=model)


@pytest.mark.parametrize("rotation, fragment", [
    ("nan", "NaN or infinite"), ("int", "a rotation is floating point"), ("no_hash", "has no tensors_sha256")])
def test_bad_subspace_tensors_are_refused(tmp_path, rotation, fragment):
    import torch
    from safetensors.torch import save_file

    from interventions import InterventionError, Subspace
    from interventions.artifact import _sha256
    from tests.interventions.test_artifact import make_subspace

    make_subspace().save(tmp_path / "s")
    tensors_path = tmp_path / "s" / "subspace.safetensors"
    if not tensors_path.exists():
        tensors_path = next((tmp_path / "s").glob("*.safetensors"))
    from safetensors.torch import load_file
    tensors = load_file(tensors_path)
    if rotation == "nan":
        tensors["rotation"][0, 0] = float("nan")
    elif rotation == "int":
        tensors["rotation"] = tensors["rotation"].to(torch.int64)
    save_file(tensors, tensors_path)
    config_path = next(p for p in (tmp_path / "s").glob("*.json"))
    if rotation == "no_hash":
        _edit_json(config_path, _drop("tensors_sha256"))
    else:
        _edit_json(config_path, lambda d: {**d, "tensors_sha256": _sha256(tensors_path)})
    with pytest.raises(InterventionError, match=fragment):
        Subspace.load(tmp_path / "s")


# ---------------------------------------------------------------- models

def test_a_vectors_task_on_a_language_model_is_one_clear_error(tmp_path, reft_setup):
    from experiments.search import AlignmentSearch
    from interventions import InterventionError

    model, _ = reft_setup
    with pytest.raises(InterventionError, match="renders vectors, but .* is a language model"):
        AlignmentSearch(model, "hierarchical_equality", layers=[0], steps=1, n_train=40, n_test=40,
                        check_model_accuracy=False).run()


@pytest.mark.parametrize("spec, fragment", [
    ("/no/such/model", "no such directory); give the folder"), ("./missing-model", "no such directory); give"),
    ("my model", "nor a hub id"), ("a/b/c", "no such directory")])
def test_a_model_path_that_does_not_exist_names_the_path_not_the_hub(spec, fragment):
    from interventions import InterventionError, load_model

    with pytest.raises(InterventionError, match=fragment.replace("(", r"\(").replace(")", r"\)")) as e:
        load_model(spec)
    assert "Repo id" not in str(e.value)


@pytest.mark.parametrize("damage, fragment", [
    ("truncate", "damaged or truncated"), ("config", "shapes disagree with config.json"),
    ("pickle", "only as pickle files"), ("no_config", "not a model directory")])
def test_damaged_model_directories_are_refused_naming_the_problem(tmp_path, reft_setup, damage, fragment):
    import shutil

    import torch
    from safetensors.torch import load_file

    from interventions import InterventionError, load_model

    model, _ = reft_setup
    src = Path(model.name)
    folder = tmp_path / "m"
    shutil.copytree(src, folder)
    weights = folder / "model.safetensors"
    if damage == "truncate":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "config":
        _edit_json(folder / "config.json", lambda d: {**d, "n_embd": d["n_embd"] * 2})
    elif damage == "pickle":
        torch.save(load_file(weights), folder / "pytorch_model.bin")
        weights.unlink()
    else:
        (folder / "config.json").unlink()
    before = files_under(tmp_path)
    with pytest.raises(InterventionError, match=fragment):
        load_model(str(folder), device="cpu")
    assert files_under(tmp_path) == before


# ---------------------------------------------------------------- dii export

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from experiments.search import AlignmentSearch
    from experiments.zoo import get_model

    runs = tmp_path_factory.mktemp("runs")
    AlignmentSearch(str(get_model("hierarchical_equality", progress=False)), "hierarchical_equality", layers=[0],
                    variables=["V1"], steps=2, n_train=60, n_test=40, controls=[]).run(run_dir=runs / "r")
    site = next((runs / "r" / "subspaces").iterdir()).name.split("__")[0]
    return runs, site


@pytest.mark.parametrize("case, fragment", [
    ("site_escape", "is not a site name"),
    ("variable_escape", "is not a variable name"),
    ("out_is_file", "is a file"),
    ("out_parent_missing", "parent folder"),
    ("no_config", "not a valid artifact"),
    ("unknown_site", "has no subspace for site"),
])
def test_dii_export_refuses_bad_requests_and_writes_nothing(tmp_path, capsys, finished_run, case, fragment):
    import shutil

    from experiments.cli import main

    runs, site = finished_run
    run_copy = tmp_path / "runs"
    shutil.copytree(runs, run_copy)
    (tmp_path / "a_file").write_text("x")
    args = {"site": site, "variable": "V1", "out": str(tmp_path / "exported")}
    if case == "site_escape":
        args["site"] = "../../.."
    elif case == "variable_escape":
        args["variable"] = "../V1"
    elif case == "out_is_file":
        args["out"] = str(tmp_path / "a_file")
    elif case == "out_parent_missing":
        args["out"] = str(tmp_path / "no" / "such" / "dir")
    elif case == "no_config":
        (run_copy / "r" / "subspaces" / f"{site}__V1" / "config.json").unlink()
    else:
        args["site"] = "L9.block_output.vector"
    before = files_under(tmp_path)
    code = main(["export", "r", "--runs-dir", str(run_copy), *[f"--{k}={v}" for k, v in args.items()]])
    err = capsys.readouterr().err
    assert code != 0 and fragment in err and "Traceback" not in err, err
    assert files_under(tmp_path) == before


def test_dii_export_of_a_good_subspace_still_works(tmp_path, capsys, finished_run):
    from experiments.cli import main
    from interventions import Subspace

    runs, site = finished_run
    assert main(["export", "r", "--runs-dir", str(runs), "--site", site, "--variable", "V1",
                 "--out", str(tmp_path / "exported")]) == 0
    assert Subspace.load(tmp_path / "exported").site == site


# ---------------------------------------------------------------- compare

COMPARE = """
[compare]
methods = ["loreft", "lora"]
seeds = [0]
name = {name}

[finetune]
model = "config:gpt2-tiny"
data = "{data}"
steps = 2
batch_size = 8
layers = [1]
rank = 2
positions = "l1"
"""
DATA = Path(__file__).resolve().parents[1] / "experiments" / "data" / "instructions_tiny.jsonl"


@pytest.mark.parametrize("name", ['"../../x"', '"/tmp/abs-run"', '".hidden"', '""', "3"])
def test_compare_names_that_leave_the_runs_folder_are_refused(tmp_path, capsys, name):
    from experiments.cli import main

    config = tmp_path / "c.toml"
    config.write_text(COMPARE.format(name=name, data=DATA))
    (tmp_path / "runs").mkdir()
    before = files_under(tmp_path.parent)
    assert main(["compare", str(config), "--runs-dir", str(tmp_path / "runs")]) != 0
    err = capsys.readouterr().err
    assert "name" in err and "Traceback" not in err, err
    assert files_under(tmp_path.parent) == before


def test_compare_runs_with_tqdm_disabled(tmp_path, capsys, monkeypatch):
    from experiments.cli import main

    monkeypatch.setenv("TQDM_DISABLE", "1")
    config = tmp_path / "c.toml"
    config.write_text(COMPARE.format(name='"quiet"', data=DATA))
    assert main(["compare", str(config), "--runs-dir", str(tmp_path / "runs")]) == 0
    assert (tmp_path / "runs" / "quiet" / "compare.json").is_file()


# ---------------------------------------------------------------- GGUF files
def _gguf_case(case: str, folder: Path) -> Path:
    """A bad GGUF file made from the real one (tests/real's SmolLM2): cut short, not GGUF at all,
    an architecture transformers cannot dequantize, or tensors that disagree with the metadata."""
    import shutil

    from gguf import GGUFReader

    from tests.real.conftest import SMOLLM2

    if not SMOLLM2.is_file():
        pytest.fail(f"{SMOLLM2} is missing: run `bash scripts/fetch_models.sh` (make test does)")
    path = folder / f"{case}.gguf"
    if case == "truncated":
        with open(SMOLLM2, "rb") as src:
            path.write_bytes(src.read(SMOLLM2.stat().st_size // 2))
    elif case == "not_gguf":
        path.write_text("a model card, saved under the wrong name\n")
    else:
        shutil.copy(SMOLLM2, path)
        reader = GGUFReader(str(path), "r+")  # edits the file in place, through its memory map
        if case == "architecture":
            field = reader.fields["general.architecture"]
            field.parts[field.data[0]][:] = list(b"lxama")  # same length: the file stays well formed
        else:
            reader.fields["llama.feed_forward_length"].parts[-1][0] = 1024  # its tensors are 1536 wide
        del reader
    return path


@pytest.mark.parametrize("case, fragment", [
    ("truncated", "it is truncated or damaged"),
    ("not_gguf", "it is not a GGUF file"),
    ("architecture", "its architecture 'lxama' is one transformers cannot dequantize"),
    ("shapes", "its tensors disagree with its metadata"),
])
def test_bad_gguf_files_are_one_clear_error_and_nothing_is_cached(tmp_path, monkeypatch, capsys, case, fragment):
    from interventions import load_model

    monkeypatch.setenv("DII_CACHE", str(tmp_path / "cache"))
    path = _gguf_case(case, tmp_path)
    with pytest.raises(InterventionError, match=fragment) as err:
        load_model(str(path), device="cpu")
    assert str(path) in str(err.value)
    cache = tmp_path / "cache" / "gguf"
    assert not cache.exists() or [p.name for p in cache.iterdir()] in ([], [".locks"])
    assert "Traceback" not in capsys.readouterr().err
