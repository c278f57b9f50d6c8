"""Helpers shared by the app tests (fixtures live in conftest.py)."""

from __future__ import annotations

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[2] / "app"
TIMEOUT = 120  # seconds per AppTest script run (the first may load a model)


def page(name: str) -> AppTest:
    """One page file on its own (no navigation around it)."""
    return AppTest.from_file(str(APP / "views" / f"{name}.py"), default_timeout=TIMEOUT)


def app() -> AppTest:
    return AppTest.from_file(str(APP / "main.py"), default_timeout=TIMEOUT)


def wait_for_job(at: AppTest, key: str, limit_s: float = 300) -> object:
    """Rerun the page until the background job ends (the browser does this with run_every)."""
    deadline = time.monotonic() + limit_s
    while True:
        job = at.session_state[key]
        if job.done or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    at.run()
    at.run()  # the first run sees the job end and reruns the page once
    assert job.done, f"{key} did not finish within {limit_s} s: {job.message}"
    return job


def no_exceptions(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def start_and_wait(at: AppTest, button: str, job_key: str, limit_s: float = 300) -> object:
    """Press a form's Start button and wait for its job, which must end with no error."""
    at.button(key=button).click().run()
    no_exceptions(at)
    job = wait_for_job(at, job_key, limit_s)
    no_exceptions(at)
    assert job.error is None and job.crashed is None, job.error or job.crashed
    return job


def labelled(elements, label: str):
    """The element with this label (run pickers' keys change with the runs' statuses)."""
    return next(e for e in elements if e.label == label)
