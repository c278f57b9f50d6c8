"""`dii search` under torchrun with 2 CPU processes (gloo) computes the same cells as one
process: each rank runs cells r::2 and rank 0 merges the run directory."""

import json
import os
import subprocess
import sys
from pathlib import Path

from experiments.cli import main

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
name = "sharded"
model = "zoo:hierarchical_equality"
task = "hierarchical_equality"
layers = "all"
k = 2
steps = 10
n_train = 200
n_test = 100
seed = 2
device = "cpu"
controls = ["random_rotation"]
"""


def _cells(run_dir: Path) -> dict:
    rows = json.loads((run_dir / "results.json").read_text())
    return {(r["cell"], r["variable"]): r["iia"] for r in rows}


def test_two_gloo_ranks_give_the_same_cells_as_one_process(tmp_path):
    from experiments.zoo import get_model

    get_model("hierarchical_equality", seed=0, progress=False)  # trained once, before the ranks race for it
    cfg = tmp_path / "sharded.toml"
    cfg.write_text(CONFIG)

    assert main(["search", str(cfg), "--runs-dir", str(tmp_path / "one")]) == 0

    # CPU ranks (gloo) even where a GPU is visible: the one-process run above is on CPU too.
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath, "CUDA_VISIBLE_DEVICES": "",
           "TQDM_DISABLE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "experiments.cli", "search", str(cfg), "--runs-dir", str(tmp_path / "two")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    one, two = tmp_path / "one" / "sharded", tmp_path / "two" / "sharded"
    assert len(_cells(one)) == 3 * 3 * 2  # 3 layers x 3 variable sets x (das, random_rotation)
    assert _cells(two) == _cells(one)
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["world_size"] == 2
    assert sorted(p.name for p in (two / "subspaces").iterdir()) == sorted(p.name for p in (one / "subspaces").iterdir())
    assert "run 'sharded' written" in proc.stdout  # only rank 0 prints the summary
    assert proc.stdout.count("run 'sharded' written") == 1
