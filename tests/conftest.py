"""Suite-wide settings: zoo models are trained once per checkout into .cache/ (git-ignored)
and shared by every test that needs them; nothing downloads."""

import os
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("DII_CACHE", str(ROOT / ".cache" / "dii-test"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(max(1, os.cpu_count() or 1))
