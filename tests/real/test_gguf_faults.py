"""A GGUF conversion killed with SIGKILL half-way leaves nothing a later load would take:
the next load clears its leftover and converts again, to the same weights."""

from __future__ import annotations

import os
import sys

from tests.experiments.test_faults import _env, _kill_when


def test_a_killed_gguf_conversion_is_ignored_and_rebuilt(tmp_path, smollm2):
    """Killed while it writes its temporary folder, a conversion leaves nothing a load would
    take; the next load clears the leftover and converts again, to the same weights."""
    from interventions import gguf, load_model
    from tests.real.conftest import SMOLLM2

    env = {**_env(), "DII_CACHE": str(tmp_path)}
    root = tmp_path / "gguf"
    _kill_when([sys.executable, "-c", f"from interventions import load_model; load_model({str(SMOLLM2)!r}, device='cpu')"],
               lambda: any(root.glob(".*.tmp-*/config.json")), env)  # the model is being saved
    assert list(root.glob(".*.tmp-*")) and not [p for p in root.iterdir() if not p.name.startswith(".")]
    os.environ["DII_CACHE"], before = str(tmp_path), os.environ["DII_CACHE"]
    try:
        again = load_model(str(SMOLLM2), device="cpu")
    finally:
        os.environ["DII_CACHE"] = before
    assert again.fingerprint == smollm2.fingerprint
    assert not list(root.glob(".*.tmp-*")) and len([p for p in root.iterdir() if (p / gguf.INFO_FILE).is_file()]) == 1
