"""Shared fixtures for tests/experiments: one zoo cache for the whole session, so each zoo
model is trained at most once per test run (tests ask `zoo_model(task)` for its path)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory):
    """Points DII_CACHE at a session temp dir (restored afterwards) and returns that dir."""
    path = tmp_path_factory.mktemp("dii_cache")
    previous = os.environ.get("DII_CACHE")
    os.environ["DII_CACHE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("DII_CACHE", None)
    else:
        os.environ["DII_CACHE"] = previous


@pytest.fixture(scope="session")
def zoo_model(zoo_cache):
    """`zoo_model(task_name, seed=0) -> Path`: the session's trained zoo model directory."""
    from experiments import zoo

    def get(task_name: str, seed: int = 0):
        return zoo.get_model(task_name, seed=seed, progress=False)

    return get
