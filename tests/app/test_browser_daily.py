"""The app as a daily tool, in a real browser (Debian's headless Chromium, playwright):
- on a fresh zoo cache, the default path runs search, then results, then finetune, with no
  error box; the first visit says what it trains, with a progress bar and the time left;
- a click on a heatmap cell opens that site's detail;
- a past finetune reopens in a new session;
- an invalid field disables Start, its reason under the field;
- form values survive a page change, and the run and site survive a reload (the URL);
- deleting a run, after its confirmation, removes it.
Screenshots of each page go to test-artifacts/ (git-ignored; docs/screenshots/ holds the README's)."""

from __future__ import annotations

import re
import shutil

import pytest

from .browser import chromium_page, fill_and_start, form_on, go_to, idle, no_error_box, open_more_settings, serve, set_number, snapshot

pytestmark = pytest.mark.browser


def selectbox(page, label: str):
    return page.locator("[data-testid=stSelectbox]").filter(has_text=label).first


def pick(page, box, option: str) -> None:
    """Choose an option of a selectbox as a keyboard user does: type to filter, click the
    option. A choice that lands during a rerun can be lost, so check it and try again."""
    combo = box.get_by_role("combobox")
    for _ in range(3):
        idle(page)
        combo.click(force=True)
        page.keyboard.press("Control+A")  # what an earlier try typed goes
        page.keyboard.type(option)
        choice = page.get_by_role("option", name=option, exact=True)
        try:
            choice.click(timeout=5_000)
        except Exception:  # noqa: BLE001 - the list closed under a rerun: try again
            page.keyboard.press("Escape")
            continue
        idle(page)
        page.wait_for_timeout(500)
        idle(page)
        if combo.input_value() == option:
            return
    raise AssertionError(f"could not pick {option!r}; the box shows {combo.input_value()!r}")


def shows(box, value: str, timeout_ms: int = 30_000) -> None:
    from playwright.sync_api import expect

    expect(box.get_by_role("combobox")).to_have_value(value, timeout=timeout_ms)


def click_heatmap_cell(page, plot, row: int, col: int, n_rows: int, n_cols: int) -> None:
    """Click the centre of a heatmap cell (row 0 is the bottom layer) inside the plot area."""
    idle(page)  # a click that lands during a rerun can be lost
    area = plot.locator(".nsewdrag").first.bounding_box()
    x = area["x"] + area["width"] * (col + 0.5) / n_cols
    y = area["y"] + area["height"] * (1 - (row + 0.5) / n_rows)
    page.mouse.click(x, y)
    idle(page)


def test_default_path_on_a_fresh_cache_then_click_a_cell_and_reopen_the_finetune(tmp_path):
    from playwright.sync_api import expect

    with serve(tmp_path, DII_CACHE=str(tmp_path / "fresh-cache")) as url, chromium_page("daily_finetune.png") as page:
        # First visit: nothing trains by itself (the zoo cache stays empty).
        page.goto(url)
        expect(page.get_by_role("heading", name="Causal model")).to_be_visible(timeout=90_000)
        idle(page)
        no_error_box(page)
        assert not (tmp_path / "fresh-cache" / "zoo").exists() or not list((tmp_path / "fresh-cache" / "zoo").iterdir())

        # The search page says the zoo model is not trained; asked to, it trains with the time left.
        start = form_on(page, "Alignment search", "Start search")
        expect(page.get_by_text("is not trained on this machine yet")).to_be_visible(timeout=30_000)
        page.get_by_role("button", name="Train it now").click()
        expect(page.get_by_text("Training the zoo model for hierarchical_equality_tokens")).to_be_visible(timeout=90_000)
        expect(page.get_by_text("s left")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Training the zoo model")).to_have_count(0, timeout=300_000)
        expect(page.get_by_text("is not trained on this machine yet")).to_have_count(0, timeout=60_000)
        idle(page)
        no_error_box(page)

        # Search on the defaults, a little smaller.
        start = form_on(page, "Alignment search", "Start search")
        open_more_settings(page)
        fill_and_start(page, start, {"Steps per site": 60, "Train pairs": 600, "Test pairs": 300}, "finished; it is in")
        page.get_by_role("link", name="Open the results").click()
        idle(page)

        # Results: the maps, then a click on the cell at layer 1, position b opens that site.
        plot = page.locator(".js-plotly-plot").first
        expect(plot.locator(".nsewdrag")).to_be_attached(timeout=60_000)
        page.wait_for_timeout(1000)
        no_error_box(page)
        click_heatmap_cell(page, plot, row=1, col=1, n_rows=4, n_cols=5)  # positions in prompt order: a b c d last
        shows(selectbox(page, "Site (or click"), "L1.block_output.b")
        assert "site=L1.block_output.b" in page.url
        expect(page.get_by_text("Training curve at L1.block_output.b")).to_be_visible(timeout=30_000)
        snapshot(page, "daily_results.png")

        # Finetune from the run's subspace toward the default changed rule, and see its results.
        start = form_on(page, "Subspace to finetuning", "Start finetuning")
        fill_and_start(page, start, {"Steps": 60, "Train examples": 300}, "Download the DAS init intervention (zip)")
        idle(page)
        no_error_box(page)
        # The list may still read "(running)" until the page redraws once after the job ends.
        listed = selectbox(page, "Finetune run").get_by_role("combobox")
        expect(listed).to_have_value(re.compile(r"^finetune-\d{8}-\d{6}$"), timeout=30_000)
        finetune_name = listed.input_value()
        assert finetune_name.startswith("finetune-")

        # A new session (another tab, tomorrow) lists that finetune and reopens it.
        other = page.context.browser.new_page(viewport={"width": 1400, "height": 1000})
        other.goto(f"{url}/finetune")
        expect(other.get_by_text("Download the DAS init intervention (zip)")).to_be_visible(timeout=120_000)
        shows(selectbox(other, "Finetune run"), finetune_name)
        expect(other.get_by_text("From run 'hierarchical_equality_tokens-")).to_be_visible()
        no_error_box(other)
        other.close()


@pytest.fixture
def server_with_a_run(tmp_path, default_runs):
    """The app on the suite's zoo cache, its runs folder holding a copy of a small default search."""
    shutil.copytree(default_runs / "small", tmp_path / "runs" / "small")
    with serve(tmp_path) as url:
        yield url, tmp_path / "runs"


def test_invalid_field_state_over_pages_and_reload_then_delete_the_run(server_with_a_run):
    from playwright.sync_api import expect

    url, runs = server_with_a_run
    with chromium_page("daily_search.png") as page:
        page.goto(f"{url}/alignment_search")
        start = page.get_by_role("button", name="Start search")
        expect(start).to_be_visible(timeout=120_000)
        idle(page)

        # An invalid field: its reason under it, Start disabled; fixed, Start comes back.
        open_more_settings(page)
        set_number(page, "Batch size", 0)
        expect(page.get_by_text("got 0; use a positive integer")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("Start is disabled until the fields marked in red are fixed.")).to_be_visible()
        expect(start).to_be_disabled()
        snapshot(page, "daily_search_invalid.png")
        set_number(page, "Batch size", 32)
        expect(start).to_be_enabled(timeout=30_000)

        # Values survive a page change and back.
        set_number(page, "k per variable", 2)
        go_to(page, "Results")
        go_to(page, "Alignment search")
        expect(page.get_by_label("k per variable", exact=True)).to_have_value("2", timeout=30_000)
        open_more_settings(page)
        expect(page.get_by_label("Batch size", exact=True)).to_have_value("32")

        # The run and the site are in the URL: a reload shows the same view.
        go_to(page, "Results")
        site = selectbox(page, "Site (or click")
        expect(site).to_be_visible(timeout=60_000)
        pick(page, site, "L0.block_output.a")
        assert "run=small" in page.url and "site=L0.block_output.a" in page.url
        page.reload()
        idle(page, 120_000)
        shows(selectbox(page, "Site (or click"), "L0.block_output.a", 60_000)
        shows(selectbox(page, "Run"), "small")

        # Deleting the run asks first, then removes it from the list and the disk.
        page.get_by_role("button", name="Delete this run").click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_contain_text("cannot be undone", timeout=30_000)
        snapshot(page, "daily_delete_confirm.png")
        dialog.get_by_role("button", name="Delete", exact=True).click()
        idle(page)
        expect(page.get_by_text("No runs yet")).to_be_visible(timeout=30_000)
        assert not (runs / "small").exists() and [p.name for p in runs.iterdir() if not p.name.startswith(".")] in ([], ["tasks"])
