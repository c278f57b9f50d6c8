"""Numbers a reviewer trusts: Wilson intervals, the trivial-rule floors of a test set, the
paired McNemar test, seeds, small test sets and the contrastive default, each against
hand-computed values."""

import math

import pytest

from causal import CausalModel, CounterfactualExample
from causal.errors import WorkbenchError
from experiments.cli.search import format_best
from experiments.search.report import best_site_summary
from experiments.runs import RunStore, load_run
from experiments.search import AlignmentSearch
from experiments.search.stats import floors, mcnemar_exact, paired_verdict, wilson_interval
from interventions import load_model

FIRST, LAST = "L0.block_output.vector", "L2.block_output.vector"
TINY = dict(k=4, epochs=4, n_train=1000, n_test=400, batch_size=64)


@pytest.fixture(scope="module")
def mlp(zoo_model):
    return load_model(str(zoo_model("hierarchical_equality")), device="cpu")


def test_wilson_interval_equals_the_hand_computed_bounds():
    # 8 of 10, z = 1.96: centre (0.8 + z^2/20) / (1 + z^2/10), half-width z sqrt(0.016 + z^2/400) / (1 + z^2/10)
    z = 1.959963984540054
    centre, half = (0.8 + z * z / 20) / (1 + z * z / 10), z * math.sqrt(0.016 + z * z / 400) / (1 + z * z / 10)
    assert wilson_interval(8, 10) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)  # the textbook figures
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(1 - high) and high - low == pytest.approx(0.1923, abs=1e-4)


def test_floors_equal_hand_counts_on_a_toy_causal_model():
    toy = CausalModel({"x": [0, 1, 2], "y": [0, 1], "V": [False, True], "O": [False, True]},
                      {"V": ["x"], "O": ["V", "y"]},
                      {"V": lambda x: x >= 1, "O": lambda V, y: V and y == 1})
    pairs = [({"x": 0, "y": 1}, {"x": 2, "y": 0}), ({"x": 1, "y": 1}, {"x": 0, "y": 1}),
             ({"x": 2, "y": 0}, {"x": 1, "y": 1}), ({"x": 0, "y": 1}, {"x": 1, "y": 1}),
             ({"x": 2, "y": 1}, {"x": 2, "y": 0})]
    examples = [CounterfactualExample(b, [s], ["V"], toy.run(b)["O"], toy.interchange(b, {"V": s})["O"])
                for b, s in pairs]
    target = [ex.counterfactual_output for ex in examples]  # True, False, False, True, True
    base = [ex.base_output for ex in examples]  # False, True, False, False, True
    source = [toy.run(s)["O"] for _, s in pairs]  # False, False, True, True, False
    assert target == [True, False, False, True, True]
    got = floors(target, base, [source])
    assert got == {"keep_base": 2 / 5, "copy_source": 2 / 5, "majority": 3 / 5}  # counted by hand above


def test_mcnemar_equals_the_hand_computed_p_value():
    # b = 10 discordant for the first, c = 2 for the second: p = 2 * P(X <= 2), X ~ Bin(12, 1/2)
    assert mcnemar_exact(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 2 ** 12)
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0
    main = {"data": "random", "test_index": list(range(14)), "test_correct": "1" * 12 + "00"}
    ctrl = {"data": "random", "test_index": list(range(14)), "test_correct": "11" + "0" * 10 + "11"}
    v = paired_verdict(main, ctrl)
    assert (v["b"], v["c"], v["verdict"]) == (10, 2, "beats") and v["p"] == pytest.approx(0.03857, abs=1e-5)
    assert paired_verdict(main, {**ctrl, "data": "disjoint"})["verdict"] == "not paired"


def test_search_rows_carry_n_interval_and_the_floor_of_their_examples(mlp):
    search = AlignmentSearch(mlp, "hierarchical_equality", layers=[0, 2], controls=["random_rotation"], **TINY)
    res = search.run()
    split, hyp = search.split("main"), search.hypothesis
    for row in res.rows:
        vs = row["variable"].split("+")
        test = split.rows_for_set(split.test_rows, vs)
        assert row["n_test"] == test.numel() == len(row["test_correct"])
        assert row["iia"] == pytest.approx(row["test_correct"].count("1") / row["n_test"])
        assert (row["iia_low"], row["iia_high"]) == pytest.approx(
            wilson_interval(row["test_correct"].count("1"), row["n_test"]))
        # keep-the-base counted by hand from the causal model on the same examples
        keep = sum(hyp.run(split.inputs[int(split.base_idx[r])])[hyp.output]
                   == split.answer_values[int(split.target[r])] for r in test.tolist()) / test.numel()
        assert row["floor_keep_base"] == pytest.approx(keep)
        assert row["floor"] == max(row["floor_keep_base"], row["floor_copy_source"], row["floor_majority"])
        assert row["above_floor"] == (row["iia_low"] > row["floor"])
    assert res.manifest["contrastive"] is True  # the default, where the task admits it
    das_first = [r for r in res.rows if r["method"] == "das" and r["site"] == FIRST]
    assert all(r["above_floor"] for r in das_first)
    assert all(not r["above_floor"] for r in res.rows if r["method"] == "random_rotation")


def test_dii_show_flags_an_interval_that_overlaps_its_floor(tmp_path):
    store = RunStore(tmp_path / "r")
    store.start({"config": {"method": "das"}, "config_hash": "h"})
    row = {"site": LAST, "layer": 2, "position": None, "component": "block_output", "variable": "V1", "method": "das",
           "iia": 0.55, "n_test": 100, "iia_low": 0.452, "iia_high": 0.644, "floor": 0.52, "floor_rule": "majority",
           "above_floor": False, "data": "random", "test_index": list(range(100)), "test_correct": "1" * 55 + "0" * 45}
    store.record_cell("das__" + LAST, [row])
    store.finish("finished")
    text = format_best(load_run(tmp_path / "r"))
    assert "0.550 [0.45, 0.64]" in text and "0.520 (majority) OVERLAPS" in text
    assert "no better than a trivial rule" in text


def test_too_few_test_examples_are_refused_and_few_warned(mlp):
    with pytest.raises(WorkbenchError, match=r"'n_test'.*at least 20"):
        AlignmentSearch(mlp, "hierarchical_equality", layers=[0], k=2, steps=2, n_train=200, n_test=30).run()
    res = AlignmentSearch(mlp, "hierarchical_equality", layers=[0], k=2, steps=2, n_train=200, n_test=200).run()
    assert all("only" in r["warning"] for r in res.rows)  # about 65 per variable set: warned, not refused


def test_seeds_run_every_cell_per_seed_and_report_mean_and_sd(mlp, tmp_path):
    search = AlignmentSearch(mlp, "hierarchical_equality", layers=[0], seeds=[0, 1, 2], controls=["random_rotation"],
                             **TINY)
    res = search.run(run_dir=tmp_path / "r")
    das = [r for r in res.rows if r["method"] == "das" and r["variable"] == "V1"]
    assert sorted(r["seed"] for r in das) == [0, 1, 2] and len({r["cell"] for r in das}) == 3
    (v1,) = [s for s in best_site_summary(load_run(tmp_path / "r").rows, "das") if s["variable"] == "V1"]
    values = [r["iia"] for r in sorted(das, key=lambda r: r["seed"])]
    assert v1["iia"] == pytest.approx(sum(values) / 3)
    assert v1["sd"] == pytest.approx((sum((x - v1["iia"]) ** 2 for x in values) / 2) ** 0.5)
    assert v1["per_seed"] == {0: values[0], 1: values[1], 2: values[2]}
    assert v1["controls"]["random_rotation"]["n"] == sum(r["n_test"] for r in das)  # pairs pooled over seeds


def test_a_floor_of_one_says_the_pairs_cannot_tell_the_variable_from_the_answer(tmp_path):
    """On pairs where every counterfactual answer is the source's own (ioi's s2_io_flip), the
    floor is 1.00: the summary says the test cannot tell the variable from the whole answer,
    never "no better than a trivial rule" (which it also says of a perfect IIA there)."""
    from experiments.search.stats import floor_verdict

    assert floor_verdict(0.99, 1.0, "copy_source", "P")[0] == "uninformative"
    assert floor_verdict(0.60, 0.50, "majority")[0] == "above floor"
    assert floor_verdict(0.45, 0.50, "majority")[0] == "at floor"
    store = RunStore(tmp_path / "r")
    store.start({"config": {"method": "das"}, "config_hash": "h"})
    row = {"site": LAST, "layer": 2, "position": None, "component": "block_output", "variable": "P", "method": "das",
           "iia": 1.0, "n_test": 100, "iia_low": 0.963, "iia_high": 1.0, "floor": 1.0, "floor_rule": "copy_source",
           "above_floor": False, "data": "random", "test_index": list(range(100)), "test_correct": "1" * 100}
    store.record_cell("das__" + LAST, [row])
    store.finish("finished")
    text = format_best(load_run(tmp_path / "r"))
    assert "1.000 (copy_source) UNINFORMATIVE" in text
    assert "the source's own answer" in text and "cannot tell P from the whole answer" in text
    assert "no better than a trivial rule" not in text
