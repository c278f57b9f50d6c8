"""The app on a real pretrained model, SmolLM2-135M-Instruct (30 layers, its GGUF file from the
real-model tier), in Debian's headless Chromium:
- the landing page and the search page with the model typed train no zoo model;
- IOI's `counterfactuals` set on the form reach the run's config; all 30 layers chosen by a
  range are listed in order, the site count equals the progress total, Start stays disabled
  and no name clash is reported while it runs, and the finished run opens on Results with its
  best site in the detail;
- a finetune from that run toward a changed rule the form offers (IOI: answer with the
  subject), whose two arms both start below 0.5;
- on the comparison page the typed model stays when the task changes, the results name it,
  and the finished comparison is the one selected."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.real.conftest import SMOLLM2

from .browser import chromium_page, form_on, go_to, idle, no_error_box, open_more_settings, serve, set_number, snapshot
from .test_browser_daily import pick, selectbox, shows

pytestmark = pytest.mark.browser


@pytest.fixture
def gguf() -> str:
    """The GGUF file, converted into the suite's cache first (these tests may run before the
    real-model tier has converted it)."""
    if not SMOLLM2.is_file():
        pytest.fail(f"{SMOLLM2} is missing: run `bash scripts/fetch_models.sh` (make test does)")
    from interventions.gguf import converted

    converted(SMOLLM2)
    return str(SMOLLM2)


def fresh_cache_with_the_conversion(tmp_path: Path) -> Path:
    """An empty cache but for the suite's dequantized SmolLM2 (converting it again costs 20 s)."""
    cache = tmp_path / "fresh-cache"
    cache.mkdir()
    (cache / "gguf").symlink_to(Path(os.environ["DII_CACHE"]) / "gguf", target_is_directory=True)
    return cache


def type_model(page, path: str) -> None:
    box = page.get_by_label("Model", exact=True)
    box.fill(path)
    box.press("Enter")
    idle(page, 180_000)


def keep_only(page, label: str, keep: str) -> None:
    """Remove every chosen value of a multiselect but `keep` (each chip's "Remove <value>" button)."""
    box = page.locator("[data-testid=stMultiSelect]").filter(has_text=label).first
    for _ in range(8):
        others = [b for b in box.locator("button[aria-label^='Remove ']").all()
                  if b.get_attribute("aria-label") != f"Remove {keep}"]
        if not others:
            return
        others[0].click()
        idle(page)
    raise AssertionError(f"could not reduce {label!r} to {keep!r}")


def zoo_is_empty(cache: Path) -> bool:
    return not (cache / "zoo").exists() or not any((cache / "zoo").iterdir())


def test_ioi_on_smollm2_thirty_layers_then_results_then_a_finetune_toward_the_subject(tmp_path, gguf):
    from playwright.sync_api import expect

    cache = fresh_cache_with_the_conversion(tmp_path)
    with serve(tmp_path, DII_CACHE=str(cache)) as url, chromium_page("real_search.png") as page:
        page.goto(url)
        expect(page.get_by_role("heading", name="Causal model")).to_be_visible(timeout=90_000)
        idle(page)
        assert zoo_is_empty(cache)
        # The landing page with the model's tokenizer: IOI's named positions on SmolLM2's tokens.
        pick(page, selectbox(page, "Task"), "ioi")
        tokenizer_model = page.get_by_label("Model (its tokenizer)", exact=True)
        tokenizer_model.fill(gguf)
        tokenizer_model.press("Enter")
        idle(page, 180_000)
        expect(page.get_by_text("Answers as scored:")).to_be_visible(timeout=120_000)
        no_error_box(page)
        assert zoo_is_empty(cache)
        snapshot(page, "real_causal_model.png")

        start = form_on(page, "Alignment search", "Start search")
        pick(page, selectbox(page, "Task"), "ioi")
        type_model(page, gguf)
        expect(page.get_by_text("30 layers")).to_be_visible(timeout=120_000)
        assert zoo_is_empty(cache)  # a local model chosen: no zoo model trained
        pick(page, selectbox(page, "task option: counterfactuals"), "s1_io_flip")
        pick(page, selectbox(page, "Hypothesis"), "output_position")

        layers = page.get_by_label("Layers", exact=True)
        layers.fill("0-29")
        layers.press("Enter")
        idle(page)
        expect(page.get_by_text("30 layers: " + ", ".join(map(str, range(30))))).to_be_visible()
        keep_only(page, "Positions", "last")  # the ioi default was set for the zoo model
        # few steps and pairs: the test is about the grid's form, run and results, not the IIA
        set_number(page, "Steps per site", 5)
        open_more_settings(page)
        set_number(page, "Train pairs", 32)
        set_number(page, "Test pairs", 24)
        page.get_by_label("Run name", exact=True).fill("real-grid")
        page.get_by_label("Run name", exact=True).press("Enter")
        idle(page)
        expect(page.get_by_text("90 cells: 30 sites (30 layers x 1 positions x 1 component) x 3 methods")).to_be_visible()
        import tomllib

        toml = tomllib.loads(page.locator("code").filter(has_text="counterfactuals").first.inner_text())["search"]
        assert toml["layers"] == list(range(30)) and toml.get("positions", ["last"]) == ["last"], toml  # in order
        no_error_box(page)

        start.click()
        expect(page.get_by_text(re.compile(r"cell \d+/90"))).to_be_visible(timeout=120_000)  # the count shown
        expect(page.get_by_role("button", name="Start search")).to_be_disabled()
        assert page.get_by_text("already exists").count() == 0
        snapshot(page, "real_search_running.png")
        expect(page.get_by_text("finished; it is in")).to_be_visible(timeout=600_000)
        assert page.get_by_text("already exists").count() == 0
        no_error_box(page)

        run = tmp_path / "runs" / "real-grid"
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["config"]["task_options"] == {"counterfactuals": "s1_io_flip"}
        assert manifest["config"]["layers"] == list(range(30)) and manifest["n_cells"] == 90
        rows = json.loads((run / "results.json").read_text())
        best = max((r for r in rows if r["method"] == "das"), key=lambda r: r["iia"])

        page.get_by_role("link", name="Open the results").click()
        idle(page, 120_000)
        shows(selectbox(page, "Run"), "real-grid")
        shows(selectbox(page, "Site (or click"), best["site"])
        expect(page.get_by_text(f"Training curve at {best['site']}")).to_be_visible(timeout=60_000)
        no_error_box(page)
        snapshot(page, "real_results.png")

        # A finetune from the run's best subspace toward the subject (a rule the form offers).
        start = form_on(page, "Subspace to finetuning", "Start finetuning", timeout_ms=120_000)
        pick(page, selectbox(page, "Changed rule"),
             "rule: s  (answer with the subject (the repeated name) instead of the indirect object)")
        set_number(page, "Steps", 4)
        set_number(page, "Train examples", 32)
        set_number(page, "Evaluate every (steps)", 4)
        set_number(page, "Held-out examples", 40)
        no_error_box(page)
        start.click()
        expect(page.get_by_text("Download the DAS init intervention (zip)")).to_be_visible(timeout=600_000)
        expect(page.get_by_text("What it answers")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Generating on 8 held-out prompts")).to_have_count(0, timeout=300_000)
        no_error_box(page)
        snapshot(page, "real_finetune.png")
        finetunes = [d for d in (tmp_path / "runs").iterdir() if d.name.startswith("finetune-")]
        assert len(finetunes) == 1
        from experiments.finetune.reuse import load_arms

        arms = load_arms(finetunes[0])
        assert len(arms) == 2
        for label, r in arms.items():  # the model answers with the IO name: the subject rule starts low
            assert r.eval_curve[0]["accuracy"] < 0.5, (label, r.eval_curve[0])


def test_the_comparison_page_keeps_the_model_names_it_and_selects_the_finished_one(tmp_path, gguf):
    from playwright.sync_api import expect

    with serve(tmp_path) as url, chromium_page("real_compare.png") as page:
        page.goto(url)
        expect(page.get_by_role("heading", name="Causal model")).to_be_visible(timeout=90_000)
        go_to(page, "ReFT versus PEFT")
        type_model(page, gguf)
        expect(page.get_by_text("30 layers")).to_be_visible(timeout=120_000)
        pick(page, selectbox(page, "Task"), "ioi")
        assert page.get_by_label("Model", exact=True).input_value() == gguf  # it stays with the task
        expect(page.get_by_text("30 layers")).to_be_visible(timeout=120_000)

        keep_only(page, "Methods", "loreft")
        page.get_by_label("Seeds", exact=True).fill("0")
        page.get_by_label("Seeds", exact=True).press("Enter")
        idle(page)
        set_number(page, "Steps", 4)
        set_number(page, "Train examples", 32)
        set_number(page, "Held-out examples", 32)
        no_error_box(page)
        page.get_by_role("button", name="Start comparison").click()
        name_box = selectbox(page, "Comparison")
        expect(name_box.get_by_role("combobox")).to_have_value(re.compile(r"^compare-\d{8}-\d{6}"), timeout=120_000)
        no_error_box(page)  # while it runs: "is running: its table appears ...", not an error
        runs = [d.name for d in (tmp_path / "runs").iterdir() if d.name.startswith("compare-")]
        assert len(runs) == 1
        shows(name_box, runs[0], timeout_ms=600_000)
        expect(page.get_by_text(re.compile(f"{runs[0]}: model {re.escape(gguf)}"))).to_be_visible(timeout=60_000)
        no_error_box(page)
        snapshot(page, "real_compare.png")
