"""Page 2 (alignment search) through main.py's navigation: a small search on the default task's
zoo model writes a run from the config the form shows; a bad value is refused by the config,
its reason under the field, and Start stays disabled; Cancel stops."""

import json
from pathlib import Path

from .app_helpers import app, no_exceptions, wait_for_job

JOB = "search_job"


def open_search(default_zoo_model):
    at = app().run()
    no_exceptions(at)
    at.switch_page("views/alignment_search.py").run()
    no_exceptions(at)
    return at


LAYERS = "s_layers_hierarchical_equality_tokens-seed0"


def red_reasons(at) -> list[str]:
    """The reasons written under fields (red markdown)."""
    return [m.value for m in at.markdown if m.value.startswith(":red[")]


def small_settings(at, steps=10):
    at.text_input(key=LAYERS).set_value("0")
    at.multiselect(key="s_pos_hierarchical_equality_tokens").set_value(["last"])
    at.number_input(key="s_steps").set_value(steps)
    at.number_input(key="s_ntrain").set_value(200)
    at.number_input(key="s_ntest").set_value(100)
    at.multiselect(key="s_controls").set_value(["random_rotation"])
    at.text_input(key="s_name").set_value("ui-run")
    return at.run()


def test_search_runs_and_writes_a_run(runs_dir, default_zoo_model, monkeypatch):
    # Two threads, not the suite's one: a job's thread must take the CLI's count, not the default
    # a new thread starts with (1).
    monkeypatch.setenv("DII_THREADS", "2")
    at = small_settings(open_search(default_zoo_model))
    assert not at.error
    shown_toml = at.code[0].value  # the config the form says it runs
    at.button(key="s_start").click().run()
    no_exceptions(at)
    job = wait_for_job(at, JOB)
    no_exceptions(at)
    assert job.error is None and job.crashed is None, job.error or job.crashed
    assert job.result == {"run": "ui-run", "complete": True}
    assert job.losses and all(loss == loss for loss in job.losses)  # the live curve got every step
    assert any("ui-run" in s.value for s in at.success)

    rows = json.loads((runs_dir / "ui-run" / "results.json").read_text())
    assert {(r["layer"], r["position"], r["method"]) for r in rows} == {(0, "last", "das"), (0, "last", "random_rotation")}
    assert {r["variable"] for r in rows} == {"V1", "V2", "V1+V2"}
    assert all(0.0 <= r["iia"] <= 1.0 for r in rows)
    manifest = json.loads((runs_dir / "ui-run" / "manifest.json").read_text())
    assert manifest["config"]["steps"] == 10 and manifest["status"] == "finished"
    # The run used exactly the config the form showed (the same TOML `dii search` reads).
    import tomllib

    from experiments.search import SearchConfig

    shown = tomllib.loads(shown_toml)["search"]
    assert SearchConfig(**shown).hash() == manifest["config_hash"]
    # It computed with the CLI's thread count (one per core), not the one thread a server thread had.
    import subprocess
    import sys

    from experiments.threads import cpu_threads

    assert f", {cpu_threads()} threads)" in manifest["device"], manifest["device"]
    (runs_dir / "cli.toml").write_text(shown_toml.replace('name = "ui-run"', 'name = "cli-run"'))
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "experiments.cli", "search", str(runs_dir / "cli.toml"), "--runs-dir",
                           str(runs_dir)], cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((runs_dir / "cli-run" / "manifest.json").read_text())["device"] == manifest["device"]


def test_user_errors_show_how_to_fix(runs_dir, default_zoo_model):
    at = open_search(default_zoo_model)
    at.text_input(key=LAYERS).set_value("1-").run()
    no_exceptions(at)
    assert any("layers and ranges such as" in r for r in red_reasons(at))
    assert at.button(key="s_start").disabled
    at.text_input(key=LAYERS).set_value("9").run()
    assert any("layer 9 does not exist; the model has layers 0..3" in r for r in red_reasons(at))

    at.text_input(key=LAYERS).set_value("0")
    at.text_input(key="s_k").set_value("40").run()  # 2 variables x 40 = 80 > hidden size 64
    assert any("do not fit in the hidden size 64" in r and "k <= 32" in r for r in red_reasons(at))
    assert at.button(key="s_start").disabled

    at.text_input(key="s_k").set_value("4")
    at.text_input(key="s_name").set_value("bad name!").run()
    no_exceptions(at)
    assert any("got 'bad name!'" in r for r in red_reasons(at)) and at.button(key="s_start").disabled
    assert JOB not in at.session_state


def test_bad_values_are_each_named_under_their_field_and_none_runs(runs_dir, default_zoo_model):
    """The values the issue saw used silently: batch 0, learning rate 0. Each is refused by the
    config, its reason under the field, Start disabled; fixing them enables Start."""
    at = open_search(default_zoo_model)
    at.number_input(key="s_bs").set_value(0)
    at.number_input(key="s_lr").set_value(0.0).run()
    no_exceptions(at)
    reasons = red_reasons(at)
    assert any("got 0; use a positive integer" in r for r in reasons)
    assert any("got 0.0; use a positive number" in r for r in reasons)
    assert at.button(key="s_start").disabled
    assert not at.code  # no config is shown: none would run
    at.number_input(key="s_bs").set_value(32)
    at.number_input(key="s_lr").set_value(0.02).run()
    assert not red_reasons(at) and not at.button(key="s_start").disabled
    assert "batch_size = 32" in at.code[0].value and "lr = 0.02" in at.code[0].value


def test_a_path_that_is_not_a_model(runs_dir, default_zoo_model, tmp_path):
    at = open_search(default_zoo_model)
    at.text_input(key="s_model").set_value(str(tmp_path / "missing")).run()
    no_exceptions(at)
    assert any("is not a model folder on this machine (no such directory)" in e.value for e in at.error)

    (tmp_path / "empty").mkdir()
    at.text_input(key="s_model").set_value(str(tmp_path / "empty")).run()
    no_exceptions(at)
    assert any("config.json" in e.value for e in at.error)
    at.text_input(key="s_model").set_value(str(tmp_path / "x.gguf")).run()
    assert any("x.gguf' does not exist" in e.value for e in at.error)


def test_cancel_stops_the_search(runs_dir, default_zoo_model):
    at = small_settings(open_search(default_zoo_model), steps=100_000)
    at.button(key="s_start").click().run()
    job = at.session_state[JOB]
    at.button(key="search_job_cancel").click().run()
    job = wait_for_job(at, JOB)
    no_exceptions(at)
    assert job.cancelled and job.result == {"run": "ui-run", "complete": False}
    assert any("cancelled" in w.value for w in at.warning)
