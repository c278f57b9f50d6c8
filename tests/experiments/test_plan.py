"""`dii plan`: the cells, passes and examples of a search counted before it runs (checked here
against a hand count), its time and memory estimated from a short calibration, and the
estimate recorded in the manifest of every `dii search` beside the time the run took."""

from __future__ import annotations

import json
import math

from experiments.cli import main
from experiments.search import AlignmentSearch

CONFIG = dict(layers=[0, 1], variables=["V1", "V2"], k=2, steps=7, batch_size=64, n_train=200, n_test=100,
              controls=["random_rotation", "vanilla", "dbm"])


def test_the_plan_counts_cells_passes_and_examples_by_hand(zoo_model):
    search = AlignmentSearch(str(zoo_model("hierarchical_equality")), "hierarchical_equality", **CONFIG)
    plan = search.plan()
    # 2 sites x (das, random_rotation, vanilla, dbm)
    assert len(plan.cells) == 8 and {c.site for c in plan.cells} == {"L0.block_output.vector", "L1.block_output.vector"}
    assert plan.kept_share == 1.0  # the zoo MLP answers every calibration example
    steps = {c.method: c.steps for c in plan.cells}
    # das: 7 steps; the two untrained controls none; dbm, per variable: 7 steps for each of V1 and V2
    assert steps == {"das": 7, "random_rotation": 0, "vanilla": 0, "dbm": 14}
    assert sum(c.forward_backward for c in plan.cells) == 2 * (7 + 14)
    # each cell evaluates the 100 test pairs of its variable sets (V1, V2, V1+V2), in one batch each
    assert all(c.forwards == 3 for c in plan.cells)
    das = next(c for c in plan.cells if c.method == "das")
    assert das.examples == 7 * 64 + 100
    train, test = search.datasets("random")
    assert plan.n_examples == 300 == len(train) + len(test)
    assert plan.n_inputs == len({json.dumps(x, sort_keys=True) for ex in (*train, *test) for x in (ex.base, *ex.sources)})
    assert plan.estimate_s > 0 and plan.peak_mb > 0 and math.isfinite(plan.estimate_s)


def test_every_search_records_its_plan_beside_the_time_it_took(tmp_path, capsys, zoo_model):
    zoo_model("hierarchical_equality")
    (tmp_path / "s.toml").write_text('name = "p"\nmodel = "zoo:hierarchical_equality"\ntask = "hierarchical_equality"\n'
                                     'layers = [0]\nsteps = 5\nn_train = 200\nn_test = 100\n')
    assert main(["plan", str(tmp_path / "s.toml"), "--cells"]) == 0
    out = capsys.readouterr().out
    assert "1 cells over 1 sites; 300 counterfactual examples" in out and "estimate on this machine" in out
    assert main(["search", str(tmp_path / "s.toml"), "--runs-dir", str(tmp_path / "runs")]) == 0
    manifest = json.loads((tmp_path / "runs" / "p" / "manifest.json").read_text())
    assert manifest["plan"]["n_cells"] == 1 and manifest["plan"]["estimate_s"] > 0
    assert manifest["timings"]["run_s"] > 0
