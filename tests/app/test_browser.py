"""End to end in a real browser: the Streamlit server on localhost, Debian's headless Chromium
driven by playwright. A small search on the default zoo model, then the results page must
draw its plotly IIA heatmap. The screenshot is kept in test-artifacts/ (git-ignored)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path, default_zoo_model):
    """The app as `make app` starts it, on a free port, with its own runs directory."""
    port = free_port()
    env = {**os.environ, "DII_RUNS": str(tmp_path / "runs")}  # DII_CACHE: the suite's, zoo model ready
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the streamlit server did not come up; its log:\n{(tmp_path / 'server.log').read_text()}")
        time.sleep(0.5)
    yield url
    stop(proc, log)


def stop(proc: subprocess.Popen, log) -> None:
    """End a server process (politely, then not) and close its log."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def idle(page, timeout_ms: int = 60_000) -> None:
    """Wait for the script rerun a widget change started to finish (the running indicator goes)."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state') === 'notRunning'",
        timeout=timeout_ms)


def set_number(page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    idle(page)


def small_search_then_results(page, start, n_test: int):
    """A quick search from the search page's form, then its heatmaps on the results page."""
    from playwright.sync_api import expect

    set_number(page, "Steps per site", 30)
    train = page.get_by_label("Train pairs", exact=True)
    for _ in range(3):  # a click that lands during a rerun can be lost: open until the field shows
        if train.is_visible():
            break
        page.locator("summary", has_text="More settings").click()
        idle(page)
        page.wait_for_timeout(500)
    expect(train).to_be_visible(timeout=10_000)
    set_number(page, "Train pairs", 400)
    set_number(page, "Test pairs", n_test)
    set_number(page, "Seed", 0)
    start.click()
    expect(page.get_by_text("finished; it is in")).to_be_visible(timeout=240_000)
    page.get_by_role("link", name="Open the results").click()
    heatmap = page.locator(".js-plotly-plot .heatmaplayer, .js-plotly-plot g.hm")
    expect(heatmap.first).to_be_attached(timeout=60_000)
    return heatmap


@contextmanager
def chromium_page(screenshot: str):
    """A headless Debian Chromium page (1400 x 1000); its screenshot is kept in test-artifacts/."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium, "
                    "or `bash scripts/setup.sh --browser`)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            yield page
        finally:
            page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
            browser.close()


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
