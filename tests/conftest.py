"""Suite-wide settings: zoo models are trained once per checkout into .cache/ (git-ignored)
and shared by every test that needs them; nothing downloads."""

import os
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("DII_CACHE", str(ROOT / ".cache" / "dii-test"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Every model in the suite is tiny: extra threads only add sync overhead (severe when the
# two cores are shared), and one thread keeps results bit-stable.
torch.set_num_threads(1)
