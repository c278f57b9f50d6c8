"""Pages 4 and 5: a LoReFT finetune from a DAS subspace beside a random init, saved as a run
that is listed and reopened, its artifacts as zips; the ReFT-versus-PEFT table; errors are
messages."""

import io
import json
import zipfile
from pathlib import Path

from .app_helpers import labelled, no_exceptions, page, start_and_wait

from app.widgets import zip_directory


def test_a_vector_model_subspace_is_refused_with_the_fix(vector_runs, monkeypatch):
    monkeypatch.setenv("DII_RUNS", str(vector_runs))
    at = page("finetune").run()
    no_exceptions(at)
    assert any("reads vectors" in e.value and "tokens task" in e.value for e in at.error)
    assert not [b for b in at.button if b.key == "f_start"]


def test_no_runs_is_a_message(runs_dir):
    at = page("finetune").run()
    no_exceptions(at)
    assert any("No search runs" in i.value for i in at.info)


def test_loreft_from_das_and_random_init(token_runs, monkeypatch):
    monkeypatch.setenv("DII_RUNS", str(token_runs))
    at = page("finetune").run()
    no_exceptions(at)
    assert not at.error
    sub = json.loads((token_runs / "pt" / "subspaces" / "L1.block_output.last__left" / "config.json").read_text())
    assert at.number_input(key="f_rank").value == sub["k"] == 2
    at.number_input(key="f_steps").set_value(6)
    at.number_input(key="f_ntrain").set_value(64)
    at.number_input(key="f_eval").set_value(3).run()
    job = start_and_wait(at, "f_start", "finetune_job")
    from experiments.finetune.reuse import load_arms

    results = load_arms(token_runs / job.result["name"])  # the finetune is a run of its own
    assert set(results) == {"DAS init", "random init"}
    d = sub["hidden_size"]
    for r in results.values():
        assert len(r.loss_curve) == 6 and [e["step"] for e in r.eval_curve][-2:] == [3, 6]
        assert r.trainable_params == 2 * d * 2 + 2  # LoReFT, one layer: 2dr + r
        assert r.config["variant"] == {"lower_shift": 2}  # the default changed rule
    assert results["DAS init"].config["init_from"].endswith("L1.block_output.last__left")
    assert results["random init"].config["init_from"] is None

    # It is listed and shown from disk: the table, and one zip per arm named after the run.
    assert labelled(at.selectbox, "Finetune run").value == job.result["name"]
    table = next(d.value for d in at.dataframe if "init" in d.value.columns)
    assert list(table["init"]) == ["DAS init", "random init"]
    downloads = [b for b in at.get("download_button") if b.proto.label.endswith("(zip)")]
    assert len(downloads) == 2
    artifact = results["DAS init"].artifact_path
    names = zipfile.ZipFile(io.BytesIO(zip_directory(Path(artifact)))).namelist()
    assert any(n.endswith("config.json") for n in names) and any(n.endswith(".safetensors") for n in names)

    # A new session (a reload, another day) reopens it.
    again = page("finetune").run()
    no_exceptions(again)
    assert labelled(again.selectbox, "Finetune run").value == job.result["name"]
    assert any("init" in d.value.columns for d in again.dataframe)


def test_method_comparison_table_and_log_axis(token_runs, tiny_lm, monkeypatch):
    monkeypatch.setenv("DII_RUNS", str(token_runs))
    at = page("compare").run()
    at.selectbox(key="c_task").set_value("price_tagging").run()
    at.text_input(key="c_model").set_value(str(tiny_lm))
    at.multiselect(key="c_methods").set_value(["loreft", "lora"])
    at.text_input(key="c_seeds").set_value("0")
    at.number_input(key="c_steps").set_value(4)
    at.number_input(key="c_ntrain").set_value(32).run()
    job = start_and_wait(at, "c_start", "compare_job")
    figs = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    assert figs["c_params"]["layout"]["xaxis"]["type"] == "log"
    data = json.loads((token_runs / job.result["name"] / "compare.json").read_text())
    summary = data["summary"]
    assert [t["x"][0] for t in figs["c_params"]["data"]] == [r["trainable_params"] for r in summary]
    assert [r["method"] for r in summary] == ["loreft", "lora"]
    assert set(figs["c_curves"]["data"][i]["name"] for i in range(2)) == {"loreft", "lora"}
    # The changed rule the form offers went into every method's config; one seed gives no sd.
    manifest = json.loads((token_runs / job.result["name"] / "manifest.json").read_text())
    assert manifest["config"]["finetune"]["variant"] == {"lower_shift": 2}
    assert all(r["accuracy_std"] is None for r in summary)
    table = next(d.value for d in at.dataframe if "trainable parameters" in d.value.columns)
    assert "accuracy sd" in table.columns and "accuracy_std" not in table.columns


def test_comparison_seed_typo_is_an_error(token_runs, monkeypatch):
    monkeypatch.setenv("DII_RUNS", str(token_runs))
    at = page("compare").run()
    at.text_input(key="c_seeds").set_value("0, one").run()
    no_exceptions(at)
    assert any("Seeds" in e.value and "whole numbers" in e.value for e in at.error)
    assert at.button(key="c_start").disabled
