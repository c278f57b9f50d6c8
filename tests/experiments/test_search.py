"""AlignmentSearch on the zoo MLP for hierarchical equality (the DAS paper's setting),
its controls, determinism, resume, and the run directory it writes."""

import json
import math

import pytest
import torch

from causal import get_task
from causal.errors import WorkbenchError
from experiments.runs import load_run
from experiments.search import AlignmentSearch, Cell
from interventions import Site, load_model

FIRST, LAST = "L0.block_output.vector", "L2.block_output.vector"
BUDGET = dict(k=4, epochs=8, n_train=2000, n_test=500, batch_size=64, lr=1e-2, seed=0)


@pytest.fixture(scope="module")
def mlp_model():
    from experiments.zoo import get_model

    return load_model(str(get_model("hierarchical_equality", seed=0, progress=False)), device="cpu")


@pytest.fixture(scope="module")
def equality_run(mlp_model, tmp_path_factory):
    search = AlignmentSearch(mlp_model, "hierarchical_equality", layers=[0, 2], **BUDGET,
                             controls=["random_rotation", "vanilla", "untrained_model", "probe"])
    run_dir = tmp_path_factory.mktemp("runs") / "equality"
    return search, search.run(run_dir=run_dir)


def _iia(results, site, variable, method):
    v = results.iia(site, variable, method)
    assert v is not None, (site, variable, method)
    return v


def test_both_equalities_localise_at_the_first_hidden_layer(equality_run):
    _, res = equality_run
    for var in ("V1", "V2", "V1+V2"):
        first, last = _iia(res, FIRST, var, "das"), _iia(res, LAST, var, "das")
        assert first >= 0.72, (var, first)  # measured 0.82-0.89
        assert last <= 0.70, (var, last)  # measured 0.44-0.62: about chance
        assert first - last >= 0.15, (var, first, last)
    assert res.best("V1")["site"] == FIRST


def test_controls_stay_near_chance(equality_run):
    _, res = equality_run
    for method in ("random_rotation", "untrained_model"):
        for row in res.rows_for(method=method):
            assert abs(row["iia"] - 0.5) <= 0.15, row
    # DAS beats its own random-rotation control at the first layer
    assert _iia(res, FIRST, "V1+V2", "das") > _iia(res, FIRST, "V1+V2", "random_rotation") + 0.2


def test_vanilla_patching_equals_the_source_output(equality_run):
    """Patching the whole vector makes the MLP answer as on the source input; on kept
    examples (the model is right on every source) IIA is the share of examples whose
    counterfactual output equals the source's own output, computed here by hand."""
    search, res = equality_run
    ctx = search.context("main")
    hyp = search.hypothesis
    for j, var in enumerate(search.variables):
        test = ctx.rows_for_set(ctx.test_rows, [var])
        src_out = [hyp.run(ctx.inputs[int(ctx.src_idx[r, j])])[hyp.output] for r in test.tolist()]
        cf = [ctx.answer_values[int(ctx.target[r])] for r in test.tolist()]
        expected = sum(a == b for a, b in zip(src_out, cf)) / len(cf)
        for site in (FIRST, LAST):
            assert _iia(res, site, var, "vanilla") == pytest.approx(expected, abs=1e-9)


def test_rows_report_kept_examples_and_probe(equality_run):
    search, res = equality_run
    data = res.manifest["data"]["main"]
    assert 0.95 * 2000 <= data["n_train_kept"] <= 2000 and 0.95 * 500 <= data["n_test_kept"] <= 500
    assert data["model_accuracy"] > 0.98
    rows = res.rows_for("V1", "das")
    assert all(r["n_train_total"] == 2000 and r["n_test_total"] == 500 for r in rows)
    assert sum(r["n_test"] for r in res.rows if r["cell"] == f"das__{FIRST}") == data["n_test_kept"]
    probe = [r for r in res.rows_for(method="probe") if r["site"] == FIRST]
    assert {r["variable"] for r in probe} == {"V1", "V2"}
    assert all(r["probe_accuracy"] > 0.9 for r in probe)
    assert all(len(res.curves[f"das__{s}"]) == 8 * math.ceil(data["n_train_kept"] / 64) for s in (FIRST, LAST))


def test_run_directory_is_complete_and_loadable(equality_run, mlp_model):
    search, res = equality_run
    d = res.run_dir
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["status"] == "finished"
    assert manifest["model"]["fingerprint"] == mlp_model.fingerprint
    assert {"torch", "transformers", "nnsight", "dii-workbench"} <= set(manifest["versions"])
    assert manifest["config"]["k"] == 4 and manifest["seed"] == 0
    assert len(json.loads((d / "results.json").read_text())) == len(res.rows)
    assert len((d / "results.csv").read_text().strip().splitlines()) == len(res.rows) + 1
    # trained cells have curves: DAS and the same search on the untrained model
    assert set(json.loads((d / "curves.json").read_text())) == {
        f"{m}__{s}" for m in ("das", "untrained_model") for s in (FIRST, LAST)}

    run = load_run(d)
    for var in ("V1", "V2"):
        sub = run.load_subspace(FIRST, var, model=mlp_model)
        assert sub.k == 4 and sub.variables == [var]
        gram = sub.rotation @ sub.rotation.T
        assert torch.allclose(gram, torch.eye(4), atol=1e-5)
        assert sub.iia == pytest.approx(_iia(res, FIRST, var, "das"))
    joint = run.load_subspace(FIRST, "V1+V2", model=mlp_model)
    assert joint.slices == {"V1": (0, 4), "V2": (4, 8)}
    # the joint artifact reproduces the search's IIA through the module it rebuilds
    ctx = search.context("main")
    site = Site.parse(FIRST)
    module = joint.to_module()
    test = ctx.rows_for_set(ctx.test_rows, ["V1", "V2"])
    iia = int(ctx.correct(site, test, ctx.dii_fn(site, module)).sum()) / test.numel()
    assert iia == pytest.approx(_iia(res, FIRST, "V1+V2", "das"), abs=1e-6)


def test_identity_of_the_first_argument_stays_near_chance(mlp_model):
    """The DAS paper's control hypothesis. On contrastive counterfactuals (pairs sharing a base whose
    sources give different outputs) an a == b subspace can no longer pass for a's identity: on plain
    data this hypothesis reaches about 0.82 at the first layer, by mimicking 'set a == b to False'."""
    kw = dict(layers=[0], contrastive=True, **BUDGET)
    first = AlignmentSearch(mlp_model, "hierarchical_equality", hypothesis="first_argument", **kw).run()
    both = AlignmentSearch(mlp_model, "hierarchical_equality", hypothesis="both_equalities", **kw).run()
    assert first.manifest["config"]["contrastive"] is True
    assert _iia(first, FIRST, "A", "das") < 0.65  # measured 0.51
    assert _iia(both, FIRST, "V1+V2", "das") > 0.8  # measured 0.85
    with pytest.raises(WorkbenchError, match="'contrastive'"):
        AlignmentSearch(mlp_model, "hierarchical_equality", contrastive="yes")


def test_same_config_and_seed_give_the_same_iia(mlp_model):
    kw = dict(layers=[0], k=2, steps=25, n_train=300, n_test=100, seed=3, controls=["random_rotation"])
    a = AlignmentSearch(mlp_model, "hierarchical_equality", **kw).run()
    b = AlignmentSearch(mlp_model, "hierarchical_equality", **kw).run()
    assert [r["iia"] for r in a.rows] == [r["iia"] for r in b.rows]
    assert a.curves == b.curves
    c = AlignmentSearch(mlp_model, "hierarchical_equality", **{**kw, "seed": 4}).run()
    assert a.curves != c.curves


def test_resume_skips_finished_cells(mlp_model, tmp_path):
    kw = dict(layers=[0, 1, 2], k=2, steps=10, n_train=200, n_test=100)
    calls = []

    def stop_after_first_cell():
        return len(calls) >= 1

    def progress(p):
        if p.event == "cell_done":
            calls.append(p.cell)

    first = AlignmentSearch(mlp_model, "hierarchical_equality", **kw).run(
        run_dir=tmp_path / "r", progress=progress, should_stop=stop_after_first_cell)
    assert not first.complete and len(calls) == 1
    assert load_run(tmp_path / "r").manifest["status"] == "interrupted"

    events = []
    resumed = AlignmentSearch(mlp_model, "hierarchical_equality", **kw).run(
        run_dir=tmp_path / "r", resume=True, progress=lambda p: events.append((p.event, p.cell)))
    skipped = [c for e, c in events if e == "cell_skipped"]
    trained = [c for e, c in events if e == "cell_done"]
    assert skipped == calls and len(trained) == 2 and calls[0] not in trained
    fresh = AlignmentSearch(mlp_model, "hierarchical_equality", **kw).run()
    assert [(r["cell"], r["variable"], r["iia"]) for r in resumed.rows] == \
           [(r["cell"], r["variable"], r["iia"]) for r in fresh.rows]
    assert load_run(tmp_path / "r").manifest["status"] == "finished"
    with pytest.raises(WorkbenchError, match="--resume"):
        AlignmentSearch(mlp_model, "hierarchical_equality", **kw).run(run_dir=tmp_path / "r")


def test_boundless_learns_a_boundary_per_variable(mlp_model):
    res = AlignmentSearch(mlp_model, "hierarchical_equality", method="boundless", layers=[0], steps=60,
                          n_train=600, n_test=200).run()
    assert {r["variable"] for r in res.rows} == {"V1", "V2"}
    for r in res.rows:
        assert r["method"] == "boundless" and 0 <= r["k"] <= 16 and 0.0 <= r["iia"] <= 1.0
    for (site, var), sub in res.subspaces.items():
        assert torch.allclose(sub.rotation @ sub.rotation.T, torch.eye(sub.k), atol=1e-5)


def test_errors_a_user_can_cause_name_the_field(mlp_model):
    with pytest.raises(WorkbenchError, match="'k'.*use k <= 8"):
        AlignmentSearch(mlp_model, "hierarchical_equality", k=9).cells()
    with pytest.raises(WorkbenchError, match="'layers'.*0..2"):
        AlignmentSearch(mlp_model, "hierarchical_equality", layers=[5]).cells()
    with pytest.raises(WorkbenchError, match="'components'.*attn_output"):
        AlignmentSearch(mlp_model, "hierarchical_equality", components=["attn_output"]).cells()
    with pytest.raises(WorkbenchError, match="'variables'.*'Q'"):
        AlignmentSearch(mlp_model, "hierarchical_equality", variables=["Q"])
    with pytest.raises(WorkbenchError, match="'controls'"):
        AlignmentSearch(mlp_model, "hierarchical_equality", controls=["bogus"])


def test_language_model_path_with_named_positions(zoo_model):
    """The zoo's GPT-2 on its word-level tokenizer: the suffix-only path runs at a named token
    position and at 'last', and a control on the untrained copy too."""
    model = load_model(str(zoo_model("hierarchical_equality_tokens")), device="cpu")
    search = AlignmentSearch(model, "hierarchical_equality_tokens", layers=[1], positions=["b", "last"], k=2,
                             steps=5, n_train=200, n_test=300, controls=["random_rotation", "untrained_model"])
    assert [c.key for c in search.cells()] == [
        "das__L1.block_output.b", "das__L1.block_output.last",
        "random_rotation__L1.block_output.b", "random_rotation__L1.block_output.last",
        "untrained_model__L1.block_output.b", "untrained_model__L1.block_output.last"]
    res = search.run()
    assert {r["site"] for r in res.rows} == {"L1.block_output.b", "L1.block_output.last"}
    kept = res.manifest["data"]["main"]["n_test_kept"]
    for r in res.rows:
        assert r["iia"] is None or 0.0 <= r["iia"] <= 1.0
        assert r["n_test"] <= (kept if r["method"] != "untrained_model" else 300)
    # the untrained control keeps every example: nothing is filtered on a random model
    assert res.manifest["data"]["untrained"]["n_test_kept"] == 300


def test_cell_seed_depends_on_the_site_not_the_order(mlp_model):
    s = AlignmentSearch(mlp_model, "hierarchical_equality", layers=[0, 1])
    site = Site(0, "block_output", None)
    a = torch.randn(3, generator=s.cell_generator(Cell("das", site)))
    b = torch.randn(3, generator=s.cell_generator(Cell("random_rotation", site)))
    c = torch.randn(3, generator=s.cell_generator(Cell("das", Site(1, "block_output", None))))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_ctrl_c_leaves_a_consistent_run(mlp_model, tmp_path):
    def interrupt_after_first_cell(p):
        if p.event == "cell_done":
            raise KeyboardInterrupt

    search = AlignmentSearch(mlp_model, "hierarchical_equality", layers=[0, 1], k=2, steps=5, n_train=200, n_test=100)
    with pytest.raises(KeyboardInterrupt):
        search.run(run_dir=tmp_path / "r", progress=interrupt_after_first_cell)
    run = load_run(tmp_path / "r")
    assert run.manifest["status"] == "interrupted"
    assert {r["cell"] for r in run.rows} == {"das__L0.block_output.vector"}
    assert (tmp_path / "r" / "subspaces" / "L0.block_output.vector__V1+V2" / "subspace.safetensors").is_file()
    assert not [p for p in (tmp_path / "r").rglob("*") if p.name.startswith(".")]  # no temp leftovers


def test_the_answer_token_loss_finds_the_same_variable(zoo_model):
    """loss_over = "answers" (a softmax over the task's answer tokens, the head computing only
    those rows) finds V1 at token b of layer 1 as the full-vocabulary loss does (measured
    0.934 / 0.938 / 0.940 against 0.934 / 0.942 / 0.934 on seeds 0-2, README)."""
    model = load_model(str(zoo_model("hierarchical_equality_tokens")), device="cpu")
    iia = {}
    for loss_over in ("vocabulary", "answers"):
        search = AlignmentSearch(model, "hierarchical_equality_tokens", layers=[1], positions=["b"], variables=["V1"],
                                 k=8, epochs=3, n_train=2000, n_test=500, controls=[], loss_over=loss_over)
        res = search.run()
        iia[loss_over] = res.iia("L1.block_output.b", "V1", "das")
        assert res.manifest["config"]["loss_over"] == loss_over
    assert iia["answers"] > 0.85, iia
    assert abs(iia["answers"] - iia["vocabulary"]) < 0.05, iia
