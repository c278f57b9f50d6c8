"""`streamlit run app/main.py`, started in the repository root with no flags (as the docs say),
listens on 127.0.0.1 only: the shipped .streamlit/config.toml says so, with usage statistics
off and the toolbar minimal. Checked in the kernel's socket table, as `ss -ltn` shows it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from tests.app.browser import ROOT, free_port, stop


def listening_addresses(port: int) -> set[str]:
    """Local addresses in LISTEN state on `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":  # 0A = LISTEN
                found.add("127.0.0.1" if address == "0100007F" else
                          "0.0.0.0" if address == "0" * width else
                          "::" if width == 32 and address == "0" * 32 else address)
    return found


def test_the_shipped_streamlit_config():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["browser"]["gatherUsageStats"] is False
    assert config["client"]["toolbarMode"] == "minimal"


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket table")
def test_plain_streamlit_run_listens_on_localhost_only(tmp_path):
    port = free_port()
    env = {**os.environ, "DII_RUNS": str(tmp_path / "runs"), "STREAMLIT_SERVER_PORT": str(port)}
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app/main.py"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not listening_addresses(port):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.3)
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5).read() == b"ok"
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        stop(proc, log)
