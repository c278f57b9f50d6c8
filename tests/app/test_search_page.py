"""Page 2 (alignment search) through main.py's navigation: a small search on the default zoo
MLP writes a run; the errors a user can make show st.error with the fix; Cancel stops."""

import json

from .app_helpers import app, no_exceptions, wait_for_job

JOB = "search_job"


def open_search(default_zoo_model):
    at = app().run()
    no_exceptions(at)
    at.switch_page("views/alignment_search.py").run()
    no_exceptions(at)
    return at


def small_settings(at, steps=10):
    at.multiselect(key="s_layers_hierarchical_equality-seed0").set_value([0])
    at.number_input(key="s_steps").set_value(steps)
    at.number_input(key="s_ntrain").set_value(200)
    at.number_input(key="s_ntest").set_value(100)
    at.multiselect(key="s_controls").set_value(["random_rotation"])
    at.text_input(key="s_name").set_value("ui-run")
    return at.run()


def test_search_runs_and_writes_a_run(runs_dir, default_zoo_model):
    at = small_settings(open_search(default_zoo_model))
    assert not at.error
    at.button(key="s_start").click().run()
    no_exceptions(at)
    job = wait_for_job(at, JOB)
    no_exceptions(at)
    assert job.error is None and job.crashed is None, job.error or job.crashed
    assert job.result == {"run": "ui-run", "complete": True}
    assert job.losses and all(loss == loss for loss in job.losses)  # the live curve got every step
    assert any("ui-run" in s.value for s in at.success)

    rows = json.loads((runs_dir / "ui-run" / "results.json").read_text())
    assert {(r["layer"], r["method"]) for r in rows} == {(0, "das"), (0, "random_rotation")}
    assert {r["variable"] for r in rows} == {"V1", "V2", "V1+V2"}
    assert all(0.0 <= r["iia"] <= 1.0 for r in rows)
    manifest = json.loads((runs_dir / "ui-run" / "manifest.json").read_text())
    assert manifest["config"]["steps"] == 10 and manifest["status"] == "finished"


def test_user_errors_show_how_to_fix(runs_dir, default_zoo_model):
    at = open_search(default_zoo_model)
    at.multiselect(key="s_layers_hierarchical_equality-seed0").set_value([]).run()
    no_exceptions(at)
    assert any("layer list is empty" in e.value for e in at.error)
    assert at.button(key="s_start").disabled

    at.multiselect(key="s_layers_hierarchical_equality-seed0").set_value([0])
    at.number_input(key="s_k").set_value(9).run()  # 2 variables x 9 > hidden size 16
    assert any("do not fit in the hidden size 16" in e.value and "k <= 8" in e.value for e in at.error)
    assert at.button(key="s_start").disabled

    at.number_input(key="s_k").set_value(4)
    at.text_input(key="s_name").set_value("bad name!").run()
    at.button(key="s_start").click().run()
    no_exceptions(at)
    assert any("'name'" in e.value for e in at.error)
    assert JOB not in at.session_state


def test_a_path_that_is_not_a_model(runs_dir, default_zoo_model, tmp_path):
    at = open_search(default_zoo_model)
    at.radio(key="s_source").set_value("Local Hugging Face directory").run()
    at.text_input(key="s_path").set_value(str(tmp_path / "missing")).run()
    no_exceptions(at)
    assert any("is not a directory" in e.value for e in at.error)

    (tmp_path / "empty").mkdir()
    at.text_input(key="s_path").set_value(str(tmp_path / "empty")).run()
    no_exceptions(at)
    assert any("config.json" in e.value for e in at.error)


def test_cancel_stops_the_search(runs_dir, default_zoo_model):
    at = small_settings(open_search(default_zoo_model), steps=100_000)
    at.button(key="s_start").click().run()
    job = at.session_state[JOB]
    at.button(key="s_cancel").click().run()
    job = wait_for_job(at, JOB)
    no_exceptions(at)
    assert job.cancelled and job.result == {"run": "ui-run", "complete": False}
    assert any("cancelled" in w.value for w in at.warning)
