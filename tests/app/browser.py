"""What the browser tests share: the app served as `make app` serves it, Debian's headless
Chromium driven by playwright, and the waits a Streamlit page needs."""

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

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(tmp_path: Path, **env_vars: str):
    """The app as `make app` starts it, on a free port, with its own runs directory (and any
    other environment, e.g. a fresh DII_CACHE); yields its URL."""
    port = free_port()
    env = {**os.environ, "DII_RUNS": str(tmp_path / "runs"), **env_vars}
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
            log.close()
            pytest.fail(f"the streamlit server did not come up; its log:\n{(tmp_path / 'server.log').read_text()}")
        time.sleep(0.5)
    try:
        yield url
    finally:
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


def open_more_settings(page) -> None:
    """Open the search form's "More settings" (a click that lands during a rerun can be lost:
    open until its fields show)."""
    from playwright.sync_api import expect

    train = page.get_by_label("Train pairs", exact=True)
    for _ in range(3):
        if train.is_visible():
            break
        page.locator("summary", has_text="More settings").click()
        idle(page)
        page.wait_for_timeout(500)
    expect(train).to_be_visible(timeout=10_000)


def small_search_then_results(page, start, n_test: int):
    """A quick search from the search page's form, then its heatmaps on the results page."""
    from playwright.sync_api import expect

    set_number(page, "Steps per site", 30)
    open_more_settings(page)
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
            snapshot(page, screenshot)
            browser.close()


def snapshot(page, name: str) -> Path:
    """The whole page as test-artifacts/<name>: Streamlit scrolls its main block inside the
    window, so the window is made as tall as the content for the picture."""
    height = page.evaluate("() => document.querySelector('[data-testid=stMain]')?.scrollHeight || 1000")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": min(max(int(height), 600), 8000)})
    page.wait_for_timeout(800)  # plotly redraws at the new size
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    page.set_viewport_size(size)
    return path


def no_error_box(page) -> None:
    """No st.error and no exception on the page (the alert kinds Streamlit draws)."""
    boxes = page.locator("[data-testid=stAlertContentError], [data-testid=stException]")
    texts = [boxes.nth(i).inner_text() for i in range(boxes.count())]
    assert not texts, texts


def go_to(page, title: str, timeout_ms: int = 120_000) -> None:
    """Change page through the sidebar navigation (same session), and wait for it to draw."""
    page.locator("[data-testid=stSidebarNav] a", has_text=title).first.click()
    idle(page, timeout_ms)
    page.wait_for_timeout(500)
    idle(page, timeout_ms)


def form_on(page, title: str, button: str, timeout_ms: int = 60_000):
    """Go to a page and wait for its form's Start button; returns the button."""
    from playwright.sync_api import expect

    go_to(page, title)
    start = page.get_by_role("button", name=button)
    expect(start).to_be_visible(timeout=timeout_ms)
    return start


def fill_and_start(page, start, numbers: dict, done_text: str, timeout_ms: int = 300_000) -> None:
    """Type the numbers into their fields, press Start, and wait for the text that says it is done."""
    from playwright.sync_api import expect

    for label, value in numbers.items():
        set_number(page, label, value)
    no_error_box(page)
    start.click()
    expect(page.get_by_text(done_text).first).to_be_visible(timeout=timeout_ms)
    no_error_box(page)
