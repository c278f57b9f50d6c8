"""What the wings of experiments/ promise their users: a method's own settings live in its
own file (a plugin's too) and reach it from a config's [method_options]; the CLI and the app
list them; and a user's task builder file runs once per `dii search`, however many seeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from experiments.cli import main
from tests.experiments.test_own_hypothesis import HAND_BUILDER

ROOT = Path(__file__).resolve().parents[2]

PLUGIN = textwrap.dedent('''
    """A control of our own: the source's activation mixed into the base's, by a share that is
    this method's own option."""
    import torch
    from pydantic import BaseModel, ConfigDict, Field

    from experiments.search.methods import AlignmentMethod, register


    class Mix(torch.nn.Module):
        def __init__(self, share):
            super().__init__()
            self.share = share

        def forward(self, base, source):
            return base + self.share * (source - base)


    @register
    class MixedPatch(AlignmentMethod):
        name = "mixed_patch"
        summary = "control: the whole vector moved a share of the way to the source's"
        role = "control"
        trains = False
        per_variable = True

        class Options(BaseModel):
            model_config = ConfigDict(extra="forbid", strict=True)
            share: float = Field(1.0, ge=0, le=1, description="how far the base moves toward the source")

        def fit(self, cell, variables):
            return Mix(cell.options.share)

        def k_of(self, cell, module):
            return cell.d
''')

CONFIG = """
name = "{name}"
model = "zoo:hierarchical_equality"
task = "hierarchical_equality"
layers = [0]
variables = ["V1"]
steps = 5
n_train = 400
n_test = 200
plugins = ["mixed_patch.py"]
controls = ["vanilla", "mixed_patch"]
{options}
"""


def test_a_plugin_method_gets_its_own_option_from_method_options(tmp_path, capsys, monkeypatch):
    """share = 1 patches the whole vector (vanilla's IIA, example for example); share = 0 leaves
    the base alone (the keep-the-base floor). A bad value is one error naming the option."""
    (tmp_path / "mixed_patch.py").write_text(PLUGIN)
    rows = {}
    for name, options in (("full", ""), ("none", "[method_options.mixed_patch]\nshare = 0.0")):
        (tmp_path / f"{name}.toml").write_text(CONFIG.format(name=name, options=options))
        assert main(["search", str(tmp_path / f"{name}.toml"), "--runs-dir", str(tmp_path / "runs")]) == 0
        rows[name] = {r["method"]: r for r in json.loads((tmp_path / "runs" / name / "results.json").read_text())}
    assert rows["full"]["mixed_patch"]["test_correct"] == rows["full"]["vanilla"]["test_correct"]
    none = rows["none"]["mixed_patch"]
    assert none["iia"] == pytest.approx(none["floor_keep_base"]) and none["iia"] < rows["none"]["vanilla"]["iia"]
    manifest = json.loads((tmp_path / "runs" / "none" / "manifest.json").read_text())
    assert manifest["config"]["method_options"] == {"mixed_patch": {"share": 0.0}}

    (tmp_path / "bad.toml").write_text(CONFIG.format(name="bad", options="[method_options.mixed_patch]\nshare = 3.0"))
    assert main(["search", str(tmp_path / "bad.toml"), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "[method_options.mixed_patch] share" in err and "less than or equal to 1" in err and "Traceback" not in err

    monkeypatch.setenv("DII_PLUGINS", str(tmp_path / "mixed_patch.py"))
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "mixed_patch" in out and "share = 1.0 (how far the base moves toward the source)" in out
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    assert "[method_options.mixed_patch]  share = 1.0" in capsys.readouterr().out


def test_the_app_form_shows_a_plugin_option(tmp_path, monkeypatch, zoo_cache):
    """The search form builds a field per option of every method it runs, the plugin's
    included, from the method's own declaration."""
    from tests.app.app_helpers import no_exceptions, page

    (tmp_path / "mixed_patch.py").write_text(PLUGIN)
    monkeypatch.setenv("DII_PLUGINS", str(tmp_path / "mixed_patch.py"))
    monkeypatch.setenv("DII_RUNS", str(tmp_path / "runs"))
    at = page("alignment_search")
    at.session_state["s_controls"] = ["vanilla", "mixed_patch"]
    at.run()
    no_exceptions(at)
    field = next(n for n in at.number_input if n.label == "mixed_patch: share")
    assert field.value == 1.0
    field.set_value(0.25).run()
    assert "share = 0.25" in at.code[0].value  # the config the form will run


COUNTING = '''
import os
with open(os.environ["DII_TEST_COUNTER"], "a") as f:
    f.write("import\\n")
''' + HAND_BUILDER.replace("def build():", "def build():\n    with open(os.environ['DII_TEST_COUNTER'], 'a') as f:\n"
                             "        f.write('build\\n')")


def test_a_builder_file_runs_once_per_search_with_three_seeds(tmp_path):
    """One `dii search` over three seeds resolves its task once: the builder file is imported
    once and its build() called once (configs, the search, each seed and the zoo share it)."""
    (tmp_path / "my_tasks.py").write_text(COUNTING)
    (tmp_path / "s.toml").write_text('name = "three"\nmodel = "zoo"\ntask = "my_tasks.py:build"\nvariables = ["B"]\n'
                                     'layers = [0]\npositions = ["y"]\nsteps = 3\nn_train = 300\nn_test = 200\n'
                                     'seeds = [0, 1, 2]\ncontrols = ["random_rotation"]\n')
    counter = tmp_path / "count.txt"
    env = {**os.environ, "DII_TEST_COUNTER": str(counter), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "experiments.cli", "search", str(tmp_path / "s.toml"), "--runs-dir",
                           str(tmp_path / "runs")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert counter.read_text().split() == ["import", "build"]
    rows = json.loads((tmp_path / "runs" / "three" / "results.json").read_text())
    assert sorted({r["seed"] for r in rows}) == [0, 1, 2]
