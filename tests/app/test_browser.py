"""End to end in a real browser: the Streamlit server on localhost, Debian's headless Chromium
driven by playwright. A small search on the default zoo model, then the results page must
draw its plotly IIA heatmap. The screenshot is kept in test-artifacts/ (git-ignored)."""

from __future__ import annotations

import pytest

from .browser import ARTIFACTS, chromium_page, idle, serve, small_search_then_results

pytestmark = pytest.mark.browser


@pytest.fixture
def server(tmp_path, default_zoo_model):
    """The app on the suite's zoo cache (the default task's model is ready)."""
    with serve(tmp_path) as url:
        yield url


def test_search_then_heatmap_in_chromium(server):
    from playwright.sync_api import expect

    with chromium_page("results_page.png") as page:
        page.goto(f"{server}/alignment_search")
        start = page.get_by_role("button", name="Start search")
        expect(start).to_be_visible(timeout=90_000)
        idle(page)
        heatmap = small_search_then_results(page, start, n_test=200)
        assert heatmap.count() >= 2  # DAS beside its controls
        expect(page.get_by_text("Download results.csv")).to_be_visible(timeout=30_000)
        page.wait_for_timeout(1500)  # plotly's transitions settle before the picture


def test_own_task_file_graph_tokens_search_and_heatmap_in_chromium(server, tmp_path):
    """A declarative task file the package does not contain: load it on the causal-model page,
    see its graph and how the tokenizer reads its prompt, search it on a zoo model trained on it,
    and see its heatmap."""
    from playwright.sync_api import expect

    from tests.causal.test_task_specs import SPEC

    task_file = tmp_path / "warm.toml"
    task_file.write_text(SPEC)
    with chromium_page("own_task_results.png") as page:
        page.goto(server)  # the causal-model page is the default one
        expect(page.get_by_text("Task file on disk")).to_be_visible(timeout=90_000)
        idle(page)
        page.get_by_text("Task file on disk").click()
        idle(page)
        box = page.get_by_label("Task file: a .toml spec, or a Python builder 'my_tasks.py:build'")
        box.fill(str(task_file))
        box.press("Enter")
        idle(page)
        expect(page.get_by_text("Loaded 'both_warm'")).to_be_visible(timeout=30_000)
        expect(page.locator(".js-plotly-plot").first).to_be_attached(timeout=30_000)  # the causal graph
        expect(page.get_by_text("How a tokenizer reads the prompt")).to_be_visible()
        expect(page.get_by_text("Answers as scored")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "own_task_causal_model.png"), full_page=True)

        page.get_by_role("link", name="Alignment search").click()  # same session: the task stays offered
        idle(page, 240_000)
        page.locator("[data-testid=stSelectbox]").first.click()  # open the task selectbox
        page.get_by_role("option", name="both_warm", exact=False).click()
        idle(page, 240_000)  # the zoo trains a model on the task (or reuses the suite's)
        start = page.get_by_role("button", name="Start search")
        expect(start).to_be_visible(timeout=240_000)
        small_search_then_results(page, start, n_test=300)
        expect(page.get_by_text("IIA for A: das and controls")).to_be_visible()
        page.wait_for_timeout(1500)
