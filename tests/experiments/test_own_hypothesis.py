"""A hypothesis the package does not contain, written in a temporary folder in all three forms
(a declarative task file, a Python builder making a Task by hand, a builder using
template_task), searched with `dii search` on a zoo model trained on it, and finetuned with
`dii finetune`. The mechanism is known: B = (y is warm) is read off the token y, so DAS must
find it there, and the random-rotation control must stay at its floor."""

from __future__ import annotations

import json
import textwrap

import pytest

from experiments.cli import main
from tests.causal.test_task_specs import BUILDER, SPEC

HAND_BUILDER = textwrap.dedent('''
    import random
    from causal import CausalModel, Task

    COLOURS = ["red", "orange", "blue", "green"]
    WARM = ("red", "orange")

    def build():
        main = CausalModel(
            {"x": COLOURS, "y": COLOURS, "A": [False, True], "B": [False, True], "O": [False, True]},
            {"A": ["x"], "B": ["y"], "O": ["A", "B"]},
            {"A": lambda x: x in WARM, "B": lambda y: y in WARM, "O": lambda A, B: A and B}, name="main")
        either = CausalModel(
            {"x": COLOURS, "y": COLOURS, "A": [False, True], "B": [False, True], "O": [False, True]},
            {"A": ["x"], "B": ["y"], "O": ["A", "B"]},
            {"A": lambda x: x in WARM, "B": lambda y: y in WARM, "O": lambda A, B: A or B}, name="either")
        words = ["and", ":", "both", "warm", "?", "yes", "no", *COLOURS]
        return Task(
            name="both_warm", description="'{x} and {y} : both warm ?' -> O",
            hypotheses={"main": main, "either": either}, default_hypothesis="main", input_kind="tokens",
            answers={False: " no", True: " yes"},
            sampler=lambda rng: {"x": rng.choice(COLOURS), "y": rng.choice(COLOURS)},
            segmenter=lambda v: [(v["x"], "x"), (" and ", None), (v["y"], "y"), (" : both warm ?", None)],
            position_names=["x", "y"], vocabulary=sorted(words))
''')

SEARCH = """
name = "{name}"
model = "zoo"
task = "{task}"
variables = ["B"]
layers = {layers}
positions = {positions}
k = 4
steps = 120
n_train = 600
n_test = 300
controls = ["random_rotation"]
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("my_hypothesis")
    (folder / "warm.toml").write_text(SPEC)
    (folder / "warm_template.py").write_text(BUILDER)
    (folder / "warm_by_hand.py").write_text(HAND_BUILDER)
    return folder


def _search(folder, capsys, name, task, layers, positions) -> list[dict]:
    config = folder / f"{name}.toml"
    config.write_text(SEARCH.format(name=name, task=task, layers=layers, positions=json.dumps(positions)))
    assert main(["search", str(config), "--runs-dir", str(folder / "runs")]) == 0
    out = capsys.readouterr().out
    assert f"run '{name}' written" in out and "vs random_rotation" in out
    manifest = json.loads((folder / "runs" / name / "manifest.json").read_text())
    assert manifest["task_hash"] and manifest["data"]["main"]["answer_rule"] == "single token"
    return json.loads((folder / "runs" / name / "results.json").read_text())


def test_all_three_forms_search_and_find_b_at_token_y(folder, capsys):
    rows = _search(folder, capsys, "warm-file", "warm.toml", "[0, 1]", ["x", "y"])
    das = {r["site"]: r for r in rows if r["method"] == "das"}
    control = {r["site"]: r for r in rows if r["method"] == "random_rotation"}
    best = max(das.values(), key=lambda r: r["iia"])
    assert best["position"] == "y" and best["iia"] >= 0.9 and best["above_floor"]  # where the mechanism lives
    assert all(r["iia"] < 0.75 for r in das.values() if r["position"] == "x")  # B is not at token x
    assert not any(r["above_floor"] for r in control.values())  # the control at its floor
    for name, spec in (("warm-template", "warm_template.py:build"), ("warm-by-hand", "warm_by_hand.py:build")):
        rows = _search(folder, capsys, name, spec, "[0]", ["y"])
        (row,) = [r for r in rows if r["method"] == "das"]
        assert row["iia"] >= 0.9 and row["above_floor"], name
    # One content hash for the three forms: one zoo model trained, and the same one searched.
    hashes = {json.loads((folder / "runs" / n / "manifest.json").read_text())["task_hash"]
              for n in ("warm-file", "warm-template", "warm-by-hand")}
    assert len(hashes) == 1


def test_the_same_task_finetunes_toward_its_alternative_hypothesis(folder, capsys):
    config = folder / "ft.toml"
    config.write_text(textwrap.dedent("""
        [finetune]
        name = "warm-to-either"
        model = "zoo"
        task = "warm.toml"
        hypothesis = "either"        # teach the alternative rule: "yes" when either colour is warm
        method = "loreft"
        layers = "all"
        positions = "l1"
        rank = 4
        lr = 1e-2
        steps = 60
        batch_size = 32
        n_train = 600
        n_eval = 200
        eval_every = 20
        seed = 0
    """))
    assert main(["finetune", str(config), "--runs-dir", str(folder / "runs")]) == 0
    out = capsys.readouterr().out
    assert "warm-to-either" in out
    result = json.loads((folder / "runs" / "warm-to-either" / "finetune.json").read_text())
    curve = result["eval_curve"]
    first, last = curve[0]["accuracy"], curve[-1]["accuracy"]
    assert last > first and last >= 0.85


def test_a_model_that_cannot_do_the_task_is_refused(folder):
    from experiments.errors import ConfigError
    from experiments.search import AlignmentSearch

    with pytest.raises(ConfigError, match=r"accuracy 0\.\d+, near chance.*check_model_accuracy = false"):
        AlignmentSearch("config:gpt2-tiny", str(folder / "warm.toml"), variables=["B"], layers=[0],
                        positions=["y"], steps=2, n_train=200, n_test=300).run()


def test_python_api_takes_a_task_object(folder):
    """AlignmentSearch, FinetuneConfig and CompareConfig take the Task itself; the zoo caches
    its model under the task's content hash, so this is the model the CLI tests trained."""
    from causal.tasks import resolve_task
    from experiments import zoo
    from experiments.finetune.compare import CompareConfig
    from experiments.finetune.config import FinetuneConfig
    from experiments.search import AlignmentSearch

    task = resolve_task(str(folder / "warm_template.py") + ":build")  # a Task object, as a user holds it
    path = zoo.get_model(task, progress=False)
    assert path.name.startswith(f"both_warm-{task.content_hash()}")
    res = AlignmentSearch(str(path), task, variables=["B"], layers=[0], positions=["y"], k=4, steps=120,
                          n_train=600, n_test=300).run()
    (row,) = res.rows
    assert row["iia"] >= 0.9 and res.manifest["task_hash"] == task.content_hash()
    ft = FinetuneConfig(model=str(path), task=task, hypothesis="either", steps=2)
    assert resolve_task(ft.task) is task
    cmp = CompareConfig(finetune={"model": str(path), "task": task, "steps": 2}, methods=["loreft", "lora"])
    assert resolve_task(cmp.config_for("lora", 0).task) is task


def test_dii_search_on_a_bad_task_file_is_one_error_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "bad.toml").write_text(SPEC.replace('O = "A and B"', 'O = "A.real and B"'))
    config = tmp_path / "search.toml"
    config.write_text(SEARCH.format(name="bad", task="bad.toml", layers="[0]", positions='["y"]'))
    assert main(["search", str(config), "--runs-dir", str(tmp_path / "runs")]) != 0
    err = capsys.readouterr().err
    assert "bad.toml" in err and "[mechanisms] O" in err and "attribute access" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()
