"""Site pre-screening (`screen_top`): a short training of the main method at every site, scored
on held-back training examples, then full training on each variable's top sites only. On the
zoo transformer for hierarchical equality the mechanism is known (V1 at token b, V2 at token
d, layer 1), and the screened search finds the same best sites as the full grid."""

from __future__ import annotations

import json

from experiments.cli import main
from experiments.search.report import best_site_summary

CONFIG = """name = "{name}"
model = "zoo:hierarchical_equality_tokens"
task = "hierarchical_equality_tokens"
variables = ["V1", "V2"]
layers = "all"
positions = ["b", "d"]
k = 8
steps = 60
n_train = 1000
n_test = 300
controls = ["random_rotation"]
{extra}
"""


def _run(tmp_path, name, extra=""):
    (tmp_path / f"{name}.toml").write_text(CONFIG.format(name=name, extra=extra))
    assert main(["search", str(tmp_path / f"{name}.toml"), "--runs-dir", str(tmp_path / "runs")]) == 0
    run = tmp_path / "runs" / name
    return json.loads((run / "results.json").read_text()), json.loads((run / "manifest.json").read_text())


def test_a_screened_search_finds_the_full_grids_best_sites(tmp_path, zoo_model):
    zoo_model("hierarchical_equality_tokens")
    full, _ = _run(tmp_path, "full")
    screened, manifest = _run(tmp_path, "screened", "screen_top = 1")
    best = {s["variable"]: s["site"] for s in best_site_summary(full, "das")}
    assert best["V1"] == "L1.block_output.b" and best["V2"] == "L1.block_output.d"
    assert {s["variable"]: s["site"] for s in best_site_summary(screened, "das") if s["variable"] != "V1+V2"} == \
        {v: best[v] for v in ("V1", "V2")}
    # every site keeps its screening score; DAS and its control trained only on the kept ones
    scores = [r for r in screened if r["method"] == "screen"]
    assert {r["site"] for r in scores} == {r["site"] for r in full} and len({r["site"] for r in scores}) == 8
    assert all(r["iia"] is None and 0 <= r["screen_score"] <= 1 for r in scores)
    assert manifest["screened"] == ["L1.block_output.b", "L1.block_output.d"]
    trained = {r["site"] for r in screened if r["method"] in ("das", "random_rotation")}
    assert trained == set(manifest["screened"])
    assert manifest["n_cells"] == 8 + 2 * 2 and manifest["status"] == "finished"
