"""Shared fixtures for tests/experiments: one zoo cache for the whole session, so each zoo
model is trained at most once per test run (tests ask `zoo_model(task)` for its path)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def zoo_cache():
    """The suite's DII_CACHE (tests/conftest.py: .cache/dii-test, git-ignored), shared with the
    app tests, so each zoo model trains once per checkout, not once per test run."""
    return Path(os.environ["DII_CACHE"])


@pytest.fixture(scope="session")
def zoo_model(zoo_cache):
    """`zoo_model(task_name, seed=0) -> Path`: the session's trained zoo model directory."""
    from experiments import zoo

    def get(task_name: str, seed: int = 0):
        return zoo.get_model(task_name, seed=seed, progress=False)

    return get
