"""Page 3 (results): heatmaps equal the run's IIA table, a cell's detail, two runs side by side,
the CSV download; no runs and a corrupt run are messages, not tracebacks."""

import json

from .app_helpers import labelled, no_exceptions, page


def figures(at) -> dict:
    return {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def test_heatmaps_detail_compare_and_download(vector_runs, monkeypatch):
    monkeypatch.setenv("DII_RUNS", str(vector_runs))
    at = page("results")
    at.session_state["run"] = "he-a"
    at.run()
    no_exceptions(at)
    assert not at.error
    rows = json.loads((vector_runs / "he-a" / "results.json").read_text())

    # One heatmap per method (DAS beside its control); each cell is the run's IIA at that layer.
    figs = figures(at)
    for method, key in (("das", "r_hm_he-a_V1"), ("random_rotation", "r_hm_random_rotation")):
        hm = figs[key]["data"][0]
        assert hm["type"] == "heatmap" and hm["y"] == ["L0", "L1"] and hm["x"] == ["vector"]
        want = {r["layer"]: r["iia"] for r in rows if r["method"] == method and r["variable"] == "V1"}
        assert [row[0] for row in hm["z"]] == [want[0], want[1]]

    # The detail of the best DAS site: its curve (10 steps) and a confusion over both outputs.
    best = max((r for r in rows if r["method"] == "das" and r["variable"] == "V1"), key=lambda r: r["iia"])
    assert at.selectbox(key="r_site_he-a_V1").value == best["site"]
    # The main map takes clicks: one invisible marker per cell, over its layer and position.
    clicks = figs["r_hm_he-a_V1"]["data"][-1]
    assert clicks["type"] == "scatter" and sorted(zip(clicks["y"], clicks["x"])) == [("L0", "vector"), ("L1", "vector")]
    assert len(figs["r_curve"]["data"][0]["y"]) == 10
    # The held-out test pairs themselves, from the run (no model): the diagonal is the IIA's right answers.
    confusion = figs["r_confusion"]["data"][0]
    assert set(confusion["x"]) == {"False", "True"}
    assert sum(map(sum, confusion["z"])) == best["n_test"]
    assert sum(confusion["z"][i][i] for i in range(2)) == round(best["iia"] * best["n_test"])
    examples = next(d.value for d in at.dataframe if "network's answer" in d.value.columns)
    assert len(examples) == 20 and set(examples["network's answer"]) <= {"False", "True"}
    assert list(examples["right"]) == [c == "1" for c in best["test_correct"][:20]]
    # Fresh pairs run the model only on request.
    at.button(key="r_fresh").click().run()
    no_exceptions(at)
    assert sum(map(sum, figures(at)["r_fresh_confusion"]["data"][0]["z"])) == 200

    # Side by side with the second run, and the table as CSV.
    at.selectbox(key="r_other").set_value("he-b").run()
    no_exceptions(at)
    assert {"r_cmp_he-a", "r_cmp_he-b"} <= set(figures(at))
    download = at.get("download_button")[0]
    assert download.proto.label == "Download results.csv" and download.proto.url
    # The table: one tab per variable, each with that variable's rows only (none repeated).
    assert [t.label for t in at.tabs] == ["V1", "V2", "V1+V2"]
    tables = at.dataframe[-3:]
    assert [len(t.value) for t in tables] == [sum(r["variable"] == v for r in rows) for v in ("V1", "V2", "V1+V2")]
    assert "IIA" in tables[0].value.columns and "variable" not in tables[0].value.columns


def test_joint_variable_and_site_change(vector_runs, monkeypatch):
    monkeypatch.setenv("DII_RUNS", str(vector_runs))
    at = page("results")
    at.session_state["run"] = "he-a"
    at.run()
    at.selectbox(key="r_var").set_value("V1+V2").run()
    at.selectbox(key="r_site_he-a_V1+V2").set_value("L1.block_output.vector").run()
    no_exceptions(at)
    assert not at.error
    rows = json.loads((vector_runs / "he-a" / "results.json").read_text())
    want = next(r["iia"] for r in rows if r["method"] == "das" and r["variable"] == "V1+V2" and r["layer"] == 1)
    assert at.metric[0].value == f"{want:.3f}"


def test_no_runs_yet(runs_dir):
    at = page("results").run()
    no_exceptions(at)
    assert any("No runs yet" in i.value for i in at.info)


def test_a_corrupt_run_is_an_error_message(runs_dir):
    bad = runs_dir / "broken"
    bad.mkdir(parents=True)
    (bad / "manifest.json").write_text('{"config": {"task": "hierarchical_equality"}, "created": "x"}')
    (bad / "results.json").write_text("{not json")
    at = page("results").run()
    no_exceptions(at)
    assert any("not valid JSON" in e.value for e in at.error)


def test_positions_in_prompt_order_and_a_failed_run_says_so(default_runs, tmp_path, monkeypatch):
    """The run listed its positions as ["last", "a"]; the maps read them as the prompt does (a,
    then the final token). A failed run is labelled failed, with its reason."""
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(default_runs / "small", runs / "small")
    manifest = json.loads((runs / "small" / "manifest.json").read_text())
    assert manifest["config"]["positions"] == ["last", "a"]
    monkeypatch.setenv("DII_RUNS", str(runs))
    at = page("results").run()
    no_exceptions(at)
    assert figures(at)["r_hm_small_V1"]["data"][0]["x"] == ["a", "last"]

    manifest.update(status="failed", error="ConfigError: the model ran out of memory")
    (runs / "small" / "manifest.json").write_text(json.dumps(manifest))
    at = page("results").run()
    assert any("This run failed" in e.value and "ran out of memory" in e.value for e in at.error)
    assert "(failed)" in labelled(at.selectbox, "Run").format_func("small")


def test_a_boundless_cell_shows_each_variable_its_own_training_curve(mlp_zoo_model, tmp_path, monkeypatch):
    """Boundless DAS trains V1 then V2 into one curve per cell; the detail shows the selected
    variable's own steps, not the 2 x steps with a jump where V2 starts."""
    from .conftest import _tiny_search

    runs = tmp_path / "runs"
    _tiny_search(runs, "bl", model="zoo:hierarchical_equality", task="hierarchical_equality", method="boundless",
                 layers=[0])
    curves = json.loads((runs / "bl" / "curves.json").read_text())
    (whole,) = curves.values()
    assert len(whole) == 20  # 10 steps for each of V1 and V2
    monkeypatch.setenv("DII_RUNS", str(runs))
    at = page("results").run()
    no_exceptions(at)
    for variable, part in (("V1", whole[:10]), ("V2", whole[10:])):
        at.selectbox(key="r_var").set_value(variable).run()
        no_exceptions(at)
        curve = figures(at)["r_curve"]
        assert curve["data"][0]["y"] == part and f"Training curve of {variable}" in curve["layout"]["title"]["text"]
