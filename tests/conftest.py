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
# The same for the processes tests start (the app's server and its jobs, `dii` and bench
# scripts): with `make test` running two workers on two cores, a second thread per process
# only oversubscribes the cores.
os.environ.setdefault("DII_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The longest files first, so that `pytest -n auto --dist loadfile --no-loadscope-reorder` (make
# test; xdist would otherwise order files by their number of tests) starts them at once on
# separate workers instead of finding one of them left alone at the end.
LONGEST_FIRST = ["tests/real/test_smollm2.py", "tests/app/test_browser_real.py", "tests/app/test_browser_daily.py",
                 "tests/bench/test_bench.py", "tests/app/test_browser.py", "tests/real/test_smollm2_reft.py",
                 "tests/real/test_gguf_faults.py"]


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest keep their order
