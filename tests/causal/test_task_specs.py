"""The user's own task in its three forms (a declarative TOML file, template_task, a builder),
and one clear error naming the file and the field for every bad spec."""

from __future__ import annotations

import random
import textwrap

import pytest

from causal import CausalModel, Task
from causal.errors import CausalModelError
from causal.tasks import resolve_task, template_task
from causal.tasks.spec import task_from_text

SPEC = textwrap.dedent('''
    name = "both_warm"
    template = "{x} and {y} : both warm ?"
    [variables]
    x = ["red", "orange", "blue", "green"]
    y = ["red", "orange", "blue", "green"]
    A = [false, true]
    B = [false, true]
    O = [false, true]
    [parents]
    A = ["x"]
    B = ["y"]
    O = ["A", "B"]
    [mechanisms]
    A = "x in ('red', 'orange')"
    B = "y in ('red', 'orange')"
    O = "A and B"
    [answers]
    true = " yes"
    false = " no"
    [hypotheses.either]
    variables = { A = [false, true], B = [false, true], O = [false, true] }
    parents = { A = ["x"], B = ["y"], O = ["A", "B"] }
    mechanisms = { A = "x in ('red', 'orange')", B = "y in ('red', 'orange')", O = "A or B" }
''')

BUILDER = textwrap.dedent('''
    from causal import CausalModel
    from causal.tasks import template_task

    WARM = {"red", "orange"}

    def build():
        model = CausalModel(
            {"x": ["red", "orange", "blue", "green"], "y": ["red", "orange", "blue", "green"],
             "A": [False, True], "B": [False, True], "O": [False, True]},
            {"A": ["x"], "B": ["y"], "O": ["A", "B"]},
            {"A": lambda x: x in WARM, "B": lambda y: y in WARM, "O": lambda A, B: A and B},
            name="main")
        either = CausalModel(
            {"x": ["red", "orange", "blue", "green"], "y": ["red", "orange", "blue", "green"],
             "A": [False, True], "B": [False, True], "O": [False, True]},
            {"A": ["x"], "B": ["y"], "O": ["A", "B"]},
            {"A": lambda x: x in WARM, "B": lambda y: y in WARM, "O": lambda A, B: A or B}, name="either")
        return template_task("both_warm", model, "{x} and {y} : both warm ?", {True: " yes", False: " no"},
                             hypotheses={"either": either})

    def broken():
        raise RuntimeError("my bug")

    def not_a_task():
        return {"name": "x"}
''')


def test_the_three_forms_are_the_same_task(tmp_path):
    (tmp_path / "warm.toml").write_text(SPEC)
    (tmp_path / "warm_tasks.py").write_text(BUILDER)
    from_file = resolve_task("warm.toml", base_dir=tmp_path)
    from_builder = resolve_task(f"{tmp_path / 'warm_tasks.py'}:build")
    assert from_file.content_hash() == from_builder.content_hash()  # same hypothesis, written two ways
    rng = random.Random(0)
    for _ in range(20):
        x = from_file.sample_input(rng)
        assert from_file.render(x) == f"{x['x']} and {x['y']} : both warm ?"
        assert from_file.hypothesis().run(x)["O"] == (x["x"] in ("red", "orange") and x["y"] in ("red", "orange"))
    assert from_file.positions == ["x", "y", "last"] or set(from_file.positions) >= {"x", "y"}
    assert set(from_file.hypotheses) == {"main", "either"}
    assert isinstance(from_builder, Task) and from_builder.answers == {False: " no", True: " yes"}


@pytest.mark.parametrize("change, message", [
    ('O = "A and B"', "not valid TOML"),  # replaced by a broken line below
    ('O = "A and C"', r"\[mechanisms\] O: 'A and C' names 'C', which is not among its parents"),
    ('O = "A.real and B"', r"\[mechanisms\] O: .*attribute access \(\.real\)"),
    ('O = "__import__(\'os\') and B"', r"\[mechanisms\] O: .*calls '__import__'; allowed functions"),
    ('O = "open(\'f\') and B"', r"\[mechanisms\] O: .*calls 'open'"),
    ('O = "[x for x in A] and B"', r"\[mechanisms\] O: .*uses ListComp, which is not allowed"),
])
def test_bad_mechanisms_name_the_file_and_the_field(tmp_path, change, message):
    spec = SPEC.replace('O = "A and B"', change if message != "not valid TOML" else 'O = "A and B')
    path = tmp_path / "bad.toml"
    path.write_text(spec)
    with pytest.raises(CausalModelError, match=message) as e:
        resolve_task(str(path))
    assert "bad.toml" in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]  # nothing written


def test_template_answers_and_graph_errors(tmp_path):
    cases = {
        "template field": (SPEC.replace("{x} and {y}", "{x} and {z}"), r"field \{z\} is not an input variable"),
        "cycle": (SPEC.replace('A = ["x"]', 'A = ["x", "O"]').replace('A = "x in (\'red\', \'orange\')"',
                                                                       'A = "O"'), r"cycle|acyclic"),
        "answer": (SPEC.replace('false = " no"\n', ""), r"output value False has no answer text; add false"),
        "unknown parent": (SPEC.replace('B = ["y"]', 'B = ["w"]'), r"\[parents\] B: 'w' is not a variable"),
        "parents as a string": (SPEC.replace('B = ["y"]', 'B = "y"'), r"\[parents\] B: give a list"),
    }
    for what, (text, message) in cases.items():
        path = tmp_path / f"{what.replace(' ', '_')}.toml"
        path.write_text(text)
        with pytest.raises(CausalModelError, match=message) as e:
            resolve_task(str(path))
        assert path.name in str(e.value), what


def test_a_builder_that_raises_or_returns_no_task_is_one_clear_error(tmp_path):
    (tmp_path / "tasks.py").write_text(BUILDER)
    with pytest.raises(CausalModelError, match=r"tasks.py:broken' raised RuntimeError: my bug"):
        resolve_task(f"{tmp_path / 'tasks.py'}:broken")
    with pytest.raises(CausalModelError, match=r"returned a dict, not a Task"):
        resolve_task(f"{tmp_path / 'tasks.py'}:not_a_task")
    with pytest.raises(CausalModelError, match=r"has no function 'nope'"):
        resolve_task(f"{tmp_path / 'tasks.py'}:nope")
    (tmp_path / "syntax.py").write_text("def build(:\n")
    with pytest.raises(CausalModelError, match=r"syntax.py.*SyntaxError"):
        resolve_task(f"{tmp_path / 'syntax.py'}:build")
    with pytest.raises(CausalModelError, match=r"does not exist"):
        resolve_task(f"{tmp_path / 'missing.py'}:build")


def test_template_task_checks_answers_and_inputs():
    model = CausalModel({"x": [1, 2], "O": [False, True]}, {"O": ["x"]}, {"O": lambda x: x > 1})
    with pytest.raises(CausalModelError, match=r"output value\(s\) \[True\].*no answer text"):
        template_task("t", model, "{x} ?", {False: " no"})
    with pytest.raises(CausalModelError, match=r"share an answer text"):
        template_task("t", model, "{x} ?", {False: " no", True: " no"})
    with pytest.raises(CausalModelError, match=r"has no \{field\}"):
        template_task("t", model, "nothing here", {False: " no", True: " yes"})
    task = template_task("t", model, "is {x} big ?", {False: " no", True: " yes"})
    assert task.render({"x": 2}) == "is 2 big ?" and task.hypothesis().run({"x": 2})["O"] is True


def test_spec_text_in_the_app_editor_is_checked_the_same_way():
    task = task_from_text(SPEC)
    assert task.name == "both_warm"
    with pytest.raises(CausalModelError, match=r"this spec \[mechanisms\] O"):
        task_from_text(SPEC.replace('O = "A and B"', 'O = "A.x"'), where="this spec")


OPTIONS_BUILDER = textwrap.dedent('''
    from causal import CausalModel
    from causal.tasks import template_task

    COLOURS = ["red", "orange", "blue", "green"]

    def build(warm=("red", "orange")):
        model = CausalModel(
            {"x": COLOURS, "y": COLOURS, "A": [False, True], "B": [False, True], "O": [False, True]},
            {"A": ["x"], "B": ["y"], "O": ["A", "B"]},
            {"A": lambda x: x in warm, "B": lambda y: y in warm, "O": lambda A, B: A and B}, name="main")
        return template_task("both_warm", model, "{x} and {y} : both warm ?", {True: " yes", False: " no"})
''')


def test_a_config_table_of_task_options_goes_to_the_builder(tmp_path):
    from experiments.search import SearchConfig, load_config
    from experiments.errors import ConfigError
    from experiments.zoo import cache_name

    (tmp_path / "tasks.py").write_text(OPTIONS_BUILDER)
    (tmp_path / "search.toml").write_text(textwrap.dedent('''
        model = "zoo"
        task = "tasks.py:build"
        [task_options]
        warm = ["red", "blue"]     # blue counts as warm in this run
    '''))
    config = load_config(tmp_path / "search.toml")
    task = config.load_task()
    assert task.causal_model.run({"x": "blue", "y": "red"})["O"] is True
    assert resolve_task(config.task).causal_model.run({"x": "blue", "y": "red"})["O"] is False  # the default
    assert task.content_hash() != resolve_task(config.task).content_hash()
    assert config.hash() != config.replace(task_options={}).hash()
    assert '{"warm": ["red", "blue"]}' in task.source
    # Misspelt options and options for a task no builder makes: one error naming the field.
    with pytest.raises(ConfigError, match=r"field 'task_options'.*does not take these.*it takes \['warm'\]"):
        config.replace(task_options={"hot": ["red"]})
    (tmp_path / "warm.toml").write_text(SPEC)
    with pytest.raises(ConfigError, match=r"field 'task_options'.*not built by one"):
        SearchConfig(model="zoo", task=str(tmp_path / "warm.toml"), task_options={"warm": ["red"]})
    # A built-in's options: another task content, so the zoo keys its model by the hash.
    fewer = SearchConfig(model="zoo", task="hierarchical_equality", task_options={"n_objects": 20}).load_task()
    assert "over 20 random objects" in fewer.description
    assert cache_name(fewer) != "hierarchical_equality" and cache_name(resolve_task("hierarchical_equality")) == "hierarchical_equality"
